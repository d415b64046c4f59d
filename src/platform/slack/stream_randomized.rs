//! Randomized input tests of what a Slack stream sends: every intermediate state of a growing
//! answer renders to a prefix of the final text (the stream only appends, counting characters
//! sent), no mass mention is ever sent, and a rollover closes and reopens a fence.

use super::*;
use crate::randomized::{check, Rng};

const MASS_MENTIONS: &[&str] = &["@everyone", "@here", "<!channel", "<!here", "<!everyone"];

const VOCABULARY: &[&str] = &[
    "Visitors ",
    "park ",
    "on ",
    "level ",
    "two. ",
    "\n",
    "\n\n",
    " ",
    "@everyone ",
    "@here",
    "<!channel> ",
    "<!here|here>",
    "<!",
    "here",
    "<",
    ">",
    "|",
    "http",
    "<http://x>",
    "<https://engram.slack.com/archives/C1/p1|annual report.pdf>",
    "<https://x/f|a b c>",
    "<https://x|",
    "a < b ",
    "```rust\n",
    "```\n",
    "日本語",
    "🦀",
    "*Sources*\n[1] ",
];

fn answer(rng: &mut Rng) -> String {
    let pieces = rng.length(200);
    let mut text = rng.text_from(VOCABULARY, pieces);
    if rng.percent(50) {
        // The sources footer as the chat service appends it.
        text.push_str("\n\n*Sources*");
        for n in 1..=rng.range(1, 4) {
            text.push_str(&format!(
                "\n[{n}] <https://engram.slack.com/files/U1/F{n}/x|{}>",
                rng.pick(&["handbook.pdf", "annual report.pdf", "a|b.md", "x>y.txt"])
            ));
            if rng.percent(50) {
                text.push_str(", p. 2");
            }
        }
    }
    text
}

fn is_prefix(prefix: &str, of: &str) -> bool {
    of.starts_with(prefix)
}

#[test]
fn every_streamed_state_is_a_prefix_of_the_final_text() {
    check("slack streamable", 2000, |rng| {
        let text = answer(rng);
        let last = streamable(&text, true);
        for mention in MASS_MENTIONS {
            assert!(!last.contains(mention), "{mention} in {last:?}");
        }
        // The states the producer publishes: the text growing piece by piece.
        let mut cuts: Vec<usize> = (0..rng.range(1, 30))
            .map(|_| rng.below(text.len() + 1))
            .filter(|&cut| text.is_char_boundary(cut))
            .collect();
        cuts.sort_unstable();
        let mut previous = String::new();
        for cut in cuts {
            let state = streamable(&text[..cut], false);
            for mention in MASS_MENTIONS {
                assert!(!state.contains(mention), "{mention} in {state:?}");
            }
            assert!(
                is_prefix(&previous, &state),
                "a later state rewrites what was sent: {previous:?} then {state:?}"
            );
            assert!(
                is_prefix(&state, &last),
                "sent {state:?}, which the final text {last:?} does not start with \
                 (text {text:?}, cut at {cut})"
            );
            previous = state;
        }
    });
}

#[test]
fn a_rollover_closes_and_reopens_the_open_fence() {
    check("slack rollover", 1000, |rng| {
        let pieces = rng.length(3000);
        let text = rng.text_from(VOCABULARY, pieces);
        let chars = text.chars().count();
        let sent = rng.below(chars + 1);
        let rollover = Rollover::at(&text, sent);
        let sent_text: String = text.chars().take(sent).collect();
        assert_eq!(rollover.close, open_fence(&sent_text).is_some());
        if rollover.close {
            assert_eq!(open_fence(&format!("{sent_text}{FENCE_CLOSE}")), None);
        }
        let next = rollover.next_message(&text, sent);
        assert!(next.starts_with(&rollover.reopen));
        assert!(next.chars().count() <= STREAM_MAX_CHARS - FENCE_CLOSE.len());
        let rest: String = text.chars().skip(sent).collect();
        assert!(rest.starts_with(&next[rollover.reopen.len()..]));
    });
}

/// Found by the randomized tests: a link still being written was sent as it stood, cut in
/// its label, and then rewritten as Markdown, so the stream appended the rest of the final
/// text after the wrong characters.
#[test]
fn a_link_still_being_written_is_held_back() {
    let text = "See <https://x/f|annual report.pdf> now";
    let partial = &text[..text.find("port").unwrap_or_default()];
    let sent = streamable(partial, false);
    assert_eq!(sent, "See");
    let last = streamable(text, true);
    assert_eq!(last, "See [annual report.pdf](https://x/f) now");
    assert!(last.starts_with(&sent));
}
