//! Randomized input tests of the chat renderer: answer-like and hostile texts split for every
//! limit, mass mentions neutralised, sources footers of odd file names.

use std::collections::HashSet;

use super::*;
use crate::randomized::{check, mutate_text, repo_file, Rng};

/// What must never reach a chat platform in engram's own output.
const MASS_MENTIONS: &[&str] = &["@everyone", "@here", "<!channel", "<!here", "<!everyone"];

/// Words and markup an answer is made of, weighted towards what moves the splitter: breaks,
/// sentence ends, fences, long words, multibyte text and mass mentions.
const VOCABULARY: &[&str] = &[
    "engram ",
    "brain ",
    "the ",
    "of ",
    "visitors ",
    "park ",
    "Größe ",
    "naïve ",
    "日本語",
    "🦀",
    "a",
    ". ",
    "! ",
    "? ",
    ", ",
    "\n",
    "\n",
    "\n\n",
    "\r\n",
    " ",
    "  ",
    "\t",
    "```",
    "```\n",
    "\n```\n",
    "\n```rust\n",
    "\n```python\n",
    "\n  ```\n",
    "\n```a-very-long-info-string-here\n",
    "``",
    "`",
    "@everyone",
    "@here",
    "<!channel>",
    "<!here|here>",
    "<!everyone>",
    "@",
    "<!",
    "every",
    "one",
    "here",
    "channel",
    "wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww",
    "- item\n",
    "# Heading\n",
    "| a | b |\n",
    "<https://example.com/x|file.pdf>",
];

fn answer_like(rng: &mut Rng) -> String {
    let mut text = String::new();
    for _ in 0..rng.range(1, 12) {
        match rng.below(6) {
            0 => {
                // A fenced code block, sometimes never closed.
                let opener = rng.pick(&["```", "```rust", "  ```python", "```x", "```👍👍"]);
                text.push_str(opener);
                if rng.percent(10) {
                    text.push_str(&"long-info-string".repeat(rng.range(1, 4)));
                }
                text.push('\n');
                for _ in 0..rng.length(80) {
                    let line = rng.pick(&[
                        "let x = frobnicate(42); // 日本",
                        "",
                        "    indented();",
                        "no_spaces_at_all_in_this_rather_long_line_of_code_here_and_there",
                        "inline ``` not a fence",
                    ]);
                    text.push_str(line);
                    text.push('\n');
                }
                if rng.percent(85) {
                    text.push_str("```\n");
                }
            }
            1 => {
                let n = rng.range(1, 4000);
                text.push_str(&rng.pick(&["w", "é", "日", "🦀"]).repeat(n));
                text.push_str("\n\n");
            }
            _ => {
                let pieces = rng.length(400);
                text.push_str(&rng.text_from(VOCABULARY, pieces));
            }
        }
    }
    text
}

fn limits(rng: &mut Rng) -> Limits {
    let max_chars = match rng.below(4) {
        0 => rng.range(0, 80),
        1 => rng.range(80, 500),
        2 => 2000,
        _ => 3000,
    };
    let platform = rng.choose(&[Platform::Discord, Platform::Slack]);
    Limits {
        max_chars,
        platform,
    }
}

/// Whether the fences in one message are balanced, reading it on its own as a chat client
/// does: every line that starts (after indentation) with three backticks opens or closes one.
fn fences_balanced(message: &str) -> bool {
    message
        .split('\n')
        .filter(|line| line.trim_start().starts_with("```"))
        .count()
        % 2
        == 0
}

/// Whether `parts` are `text` cut in order with only the documented additions: a closing
/// fence (`\n```` ` or ```` ``` ```` after a line end) at the end of a message whose cut fell
/// inside a code block, and the fence's opening line at the start of the next message.
/// Tries every reading of the ambiguous endings (the text itself may end a message with a
/// fence).
fn reconstructs(parts: &[Vec<char>], text: &[char]) -> bool {
    if text.is_empty() {
        return parts.is_empty();
    }
    // A search over (part, position in the text, whether the part reopens a fence): each
    // reading of a part that matches the text there leads to the next part. An explicit
    // stack, not recursion: a long text cut into many small parts goes deep.
    let mut seen: HashSet<(usize, usize, bool)> = HashSet::new();
    let mut stack = vec![(0_usize, 0_usize, false)];
    while let Some((i, pos, reopened)) = stack.pop() {
        if i == parts.len() {
            if pos == text.len() {
                return true;
            }
            continue;
        }
        if !seen.insert((i, pos, reopened)) {
            continue;
        }
        let part = &parts[i];
        let mut body: &[char] = part;
        if reopened {
            let Some(newline) = part.iter().position(|&c| c == '\n') else {
                continue;
            };
            let opener: String = part[..newline].iter().collect();
            if !opener.starts_with("```") {
                continue;
            }
            body = &part[newline + 1..];
        }
        let mut readings: Vec<(&[char], bool)> = vec![(body, false)];
        if let Some(without) = body.strip_suffix(&['\n', '`', '`', '`']) {
            // "```" added after a body that ended with a line break, or "\n```" added after
            // one that did not.
            readings.push((&body[..body.len() - 3], true));
            if !without.ends_with(&['\n']) {
                readings.push((without, true));
            }
        }
        for (body, closed) in readings {
            if body.is_empty() {
                continue;
            }
            let end = pos + body.len();
            if end <= text.len() && text[pos..end] == *body {
                stack.push((i + 1, end, closed));
            }
        }
    }
    false
}

/// Whether `text` has a fence line whose indentation and marker alone are longer than the
/// smallest stretch of text a message of `max` characters takes (after a reopened fence line
/// and room for a closing one): no cut can keep such a line whole, so its fence may be missed.
/// Only tiny limits meet one (the platforms' are 2,000 and 3,000 characters).
fn fence_line_wider_than_a_message(text: &str, max: usize) -> bool {
    let smallest = max.saturating_sub(MAX_OPENER + 1 + FENCE_CLOSE.len());
    text.split('\n').any(|line| {
        let indent = line.chars().take_while(|c| c.is_whitespace()).count();
        line.trim_start().starts_with("```") && indent + 3 > smallest
    })
}

fn check_split(text: &str, limits: Limits) {
    let parts = split_message(text, limits);
    let max = limits.max_chars.max(32);
    let chars: Vec<char> = text.chars().collect();
    for (i, part) in parts.iter().enumerate() {
        let count = part.chars().count();
        assert!(count > 0, "part {i} is empty; text {text:?}");
        assert!(
            count <= max,
            "part {i} has {count} > {max} characters; text {text:?}"
        );
        assert!(
            fences_balanced(part) || fence_line_wider_than_a_message(text, max),
            "part {i} leaves a code fence open: {part:?} (after {:?}, before {:?}); limit {max}; \
             text {text:?}",
            i.checked_sub(1).map(|p| &parts[p]),
            parts.get(i + 1)
        );
    }
    // Output is bounded by the input: every part takes at least one character of the text and
    // adds at most an opening line (25 characters) and a closing fence (4).
    assert!(parts.len() <= chars.len());
    let added: usize = parts.iter().map(|p| p.chars().count()).sum::<usize>() - chars.len();
    assert!(added <= parts.len() * 29, "{added} characters added");
    let part_chars: Vec<Vec<char>> = parts.iter().map(|p| p.chars().collect()).collect();
    assert!(
        reconstructs(&part_chars, &chars),
        "the parts are not the text cut in order (limit {max}):\n{parts:#?}\ntext {text:?}"
    );
}

#[test]
fn answers_split_within_limits_with_balanced_fences_and_nothing_lost() {
    check("render split answers", 1500, |rng| {
        let text = answer_like(rng);
        check_split(&text, limits(rng));
    });
}

#[test]
fn arbitrary_text_splits_within_limits() {
    check("render split arbitrary", 1500, |rng| {
        let len = rng.length(6000);
        let text = rng.string(len);
        check_split(&text, limits(rng));
    });
}

#[test]
fn mutated_documents_split_within_limits() {
    let seeds: Vec<String> = ["demo/handbook.md", "demo/release-notes.txt", "README.md"]
        .iter()
        .map(|path| String::from_utf8_lossy(&repo_file(path)).into_owned())
        .collect();
    check("render split mutated documents", 300, move |rng| {
        let seed = rng.pick(&seeds).clone();
        let donor = rng.pick(&seeds).clone();
        let text = mutate_text(
            rng,
            &seed,
            &donor,
            &["```", "\n```rust\n", "@everyone", "\n\n"],
        );
        check_split(&text, limits(rng));
    });
}

#[test]
fn mass_mentions_never_survive_neutralising() {
    check("render neutralise", 3000, |rng| {
        let pieces = rng.length(300);
        let text = rng.text_from(VOCABULARY, pieces);
        let safe = neutralise_mass_mentions(&text);
        for mention in MASS_MENTIONS {
            assert!(!safe.contains(mention), "{mention} survives in {safe:?}");
        }
        if !text.contains('\u{200b}') {
            // Only zero-width spaces are added, right after the sigil.
            let restored = safe.replace("@\u{200b}", "@").replace("<\u{200b}!", "<!");
            assert_eq!(restored, text);
        }
        // Splitting what was neutralised cannot assemble a mention again.
        for part in split_message(&safe, limits(rng)) {
            for mention in MASS_MENTIONS {
                assert!(!part.contains(mention), "{mention} in a part {part:?}");
            }
        }
    });
}

#[test]
fn footers_of_any_sources_are_safe_and_one_line_each() {
    check("render footer", 2000, |rng| {
        let one_line = rng.percent(70);
        let field = |rng: &mut Rng| {
            let len = rng.length(60);
            let text = if rng.percent(50) {
                rng.string(len)
            } else {
                rng.text_from(VOCABULARY, len)
            };
            if one_line {
                text.replace(['\n', '\r', '\u{85}', '\u{2028}'], " ")
            } else {
                text
            }
        };
        let sources: Vec<FooterSource> = (0..rng.length(12))
            .map(|n| FooterSource {
                n: n + 1,
                file: field(rng),
                page: rng.percent(50).then(|| rng.next_u64() as u32),
                heading: rng.percent(50).then(|| field(rng)),
                link: rng.percent(50).then(|| field(rng)),
            })
            .collect();
        let platform = rng.choose(&[Platform::Discord, Platform::Slack]);
        let footer = sources_footer(&sources, platform);
        for mention in MASS_MENTIONS {
            assert!(!footer.contains(mention), "{mention} in {footer:?}");
        }
        if sources.is_empty() {
            assert_eq!(footer, "");
            return;
        }
        if one_line {
            let lines: Vec<&str> = footer.split('\n').collect();
            assert_eq!(lines.len(), sources.len() + 1, "{footer:?}");
            assert!(lines[0] == "**Sources**" || lines[0] == "*Sources*");
            for (line, source) in lines[1..].iter().zip(&sources) {
                assert!(line.starts_with(&format!("[{}] ", source.n)), "{line:?}");
            }
        }
    });
}

/// Found by the randomized tests: a cut inside a long line, just before an inline ```` ``` ````,
/// started the next message with it, which opened a code block the answer does not have.
#[test]
fn a_cut_never_starts_a_message_with_an_inline_fence_marker() {
    let text = format!("{} ```{}", "a".repeat(25), "b".repeat(17));
    let limits = Limits {
        max_chars: 32,
        platform: Platform::Discord,
    };
    let parts = split_message(&text, limits);
    assert_eq!(parts, ["a".repeat(24), format!("a ```{}", "b".repeat(17))]);
    check_split(&text, limits);
}

/// Found by the randomized tests: a cut inside a fence line's indentation hid the fence from
/// both messages, so the rest of the answer had its code and prose swapped.
#[test]
fn a_cut_never_falls_inside_a_fence_lines_indentation() {
    let text = format!("ab\n{}```rust\ncode\n```\n", " ".repeat(20));
    let limits = Limits {
        max_chars: 32,
        platform: Platform::Discord,
    };
    let parts = split_message(&text, limits);
    assert_eq!(parts[0], "ab\n");
    assert!(
        parts[1].starts_with(&format!("{}```rust", " ".repeat(20))),
        "{parts:?}"
    );
    check_split(&text, limits);
}
