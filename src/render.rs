//! Pure text rendering for chat platforms: split an answer into messages that fit a platform's
//! limit at safe points (paragraph, then sentence, then word), never leaving a code fence open
//! in a message, neutralise mass mentions, and format the sources footer.

/// A chat platform's text rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most characters (Unicode scalar values) in one message.
    pub max_chars: usize,
    pub platform: Platform,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Discord,
    Slack,
}

impl Limits {
    /// Discord: 2,000 characters per message.
    pub const DISCORD: Limits = Limits {
        max_chars: 2000,
        platform: Platform::Discord,
    };
    /// Slack: a section block holds 3,000 characters.
    pub const SLACK: Limits = Limits {
        max_chars: 3000,
        platform: Platform::Slack,
    };
}

/// Room kept for closing a fence that has to be cut (`\n```` `).
pub const FENCE_CLOSE: &str = "\n```";
/// The longest fence opener (`` ```rust ``) repeated when a fence is reopened.
const MAX_OPENER: usize = 24;

/// Makes generated text unable to ping everyone: `@everyone`/`@here` (Discord) and
/// `<!channel>`/`<!here>`/`<!everyone>` and user groups `<!subteam^…>` (Slack) get a
/// zero-width space after the sigil.
pub fn neutralise_mass_mentions(text: &str) -> String {
    text.replace("@everyone", "@\u{200B}everyone")
        .replace("@here", "@\u{200B}here")
        .replace("<!channel", "<\u{200B}!channel")
        .replace("<!here", "<\u{200B}!here")
        .replace("<!everyone", "<\u{200B}!everyone")
        .replace("<!subteam^", "<\u{200B}!subteam^")
}

/// A source as the footer shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FooterSource {
    pub n: usize,
    pub file: String,
    pub page: Option<u32>,
    pub heading: Option<String>,
    pub link: Option<String>,
}

/// The sources footer: one line per source, linked where a link is known.
pub fn sources_footer(sources: &[FooterSource], platform: Platform) -> String {
    if sources.is_empty() {
        return String::new();
    }
    let mut out = String::from(match platform {
        Platform::Discord => "**Sources**",
        Platform::Slack => "*Sources*",
    });
    for source in sources {
        let name = match (&source.link, platform) {
            (Some(link), Platform::Discord) => format!("[{}](<{link}>)", source.file),
            (Some(link), Platform::Slack) => format!("<{link}|{}>", source.file),
            (None, _) => source.file.clone(),
        };
        out.push_str(&format!("\n[{}] {name}", source.n));
        if let Some(page) = source.page {
            out.push_str(&format!(", p. {page}"));
        }
        if let Some(heading) = &source.heading {
            out.push_str(&format!(" — {heading}"));
        }
    }
    neutralise_mass_mentions(&out)
}

/// Splits `text` into messages of at most `limits.max_chars` characters. Cuts fall at a
/// paragraph break if one is in reach, else at a line break, else at a sentence end, else at a
/// space, else anywhere
/// (a very long word). A cut inside a code fence closes the fence in that message and reopens
/// it (with its language) in the next. Nothing is lost: removing the added fence lines and
/// joining the messages gives the text back.
pub fn split_message(text: &str, limits: Limits) -> Vec<String> {
    let max = limits.max_chars.max(32);
    let chars: Vec<char> = text.chars().collect();
    let mut parts = Vec::new();
    let mut start = 0;
    // The opening line of the fence the next part starts inside, if any.
    let mut reopen: Option<String> = None;
    while start < chars.len() {
        let prefix = reopen.as_ref().map(|opener| format!("{opener}\n"));
        let prefix_len = prefix.as_ref().map_or(0, |p| p.chars().count());
        let budget = max - prefix_len;
        let remaining = chars.len() - start;
        let fence_at_end = |end: usize| fence_state(&chars, start, end, reopen.as_deref());
        if remaining <= budget && fence_at_end(chars.len()).is_none() {
            let mut part = prefix.unwrap_or_default();
            part.extend(&chars[start..]);
            parts.push(part);
            break;
        }
        // Leave room to close a fence, in case the cut lands inside one.
        let window = (budget - FENCE_CLOSE.len()).min(remaining);
        let end = start + best_cut(&chars[start..start + window], remaining <= window);
        let end = fence_safe_cut(&chars, start, end, start + window);
        let open = fence_at_end(end);
        let mut part = prefix.unwrap_or_default();
        part.extend(&chars[start..end]);
        if open.is_some() {
            if !part.ends_with('\n') {
                part.push('\n');
            }
            part.push_str("```");
        }
        parts.push(part);
        reopen = open;
        start = end;
    }
    parts
}

/// The opener (`` ```rust ``) of the code fence still open at the end of `text`, if any: a
/// message cut there must close it, and the next reopen it.
pub fn open_fence(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    fence_state(&chars, 0, chars.len(), None)
}

/// The fence opener still open after `chars[start..end]`, given the one open at `start`.
fn fence_state(
    chars: &[char],
    start: usize,
    end: usize,
    open_at_start: Option<&str>,
) -> Option<String> {
    let mut open = open_at_start.map(str::to_string);
    let mut line_start = start;
    let mut at_line_start = start == 0 || chars[start - 1] == '\n' || open_at_start.is_some();
    for i in start..=end {
        let line_end = i == end || chars[i] == '\n';
        if line_end {
            if at_line_start {
                let line: String = chars[line_start..i].iter().collect();
                let trimmed = line.trim_start();
                if trimmed.starts_with("```") {
                    open = match open {
                        Some(_) => None,
                        // Reopen with the language tag; a long info string is not repeated.
                        None if trimmed.trim_end().chars().count() <= MAX_OPENER => {
                            Some(trimmed.trim_end().to_string())
                        }
                        None => Some("```".to_string()),
                    };
                }
            }
            line_start = i + 1;
            at_line_start = true;
        }
    }
    open
}

/// `end`, or another cut where `end` would break a code fence. Each message is read on its
/// own, so whatever follows a cut starts a line there. A cut inside a line must not leave a
/// fence marker (```` ``` ````, after spaces) at the start of the next message, where it would
/// open a fence the text does not have, nor fall inside a fence line's indentation or marker,
/// where neither message would see the fence the text does have. Such a cut moves back to the
/// start of its line if the message holds one, else to the nearest safe point before it, else
/// to the nearest one after it within `max_end`; if there is none (a fence line indented
/// further than a message holds) the cut stays.
fn fence_safe_cut(chars: &[char], start: usize, end: usize, max_end: usize) -> usize {
    if cut_keeps_fences(chars, end) {
        return end;
    }
    if let Some(newline) = chars[start..end].iter().rposition(|&c| c == '\n') {
        return start + newline + 1;
    }
    (start + 1..end)
        .rev()
        .find(|&i| cut_keeps_fences(chars, i))
        .or_else(|| (end + 1..=max_end).find(|&i| cut_keeps_fences(chars, i)))
        .unwrap_or(end)
}

/// Indentation longer than this is not searched for a fence marker by `cut_keeps_fences`
/// (it keeps the search cheap; no real fence is indented so far).
const FENCE_INDENT_SEARCHED: usize = 64;

/// Whether a cut before `chars[i]` leaves every fence line whole at the start of a line.
fn cut_keeps_fences(chars: &[char], i: usize) -> bool {
    if i == 0 || i >= chars.len() || chars[i - 1] == '\n' {
        return true;
    }
    // After spaces (not past the line's end), a marker would start the next message's first line.
    let marker_at = |from: usize| {
        let text = chars[from..]
            .iter()
            .take(FENCE_INDENT_SEARCHED + 3)
            .skip_while(|c| c.is_whitespace() && **c != '\n');
        text.take(3).filter(|&&c| c == '`').count() == 3
    };
    if marker_at(i) {
        return false;
    }
    // Inside a fence line's indentation or marker: the line up to the cut is spaces and at
    // most two backticks.
    let before = &chars[i.saturating_sub(FENCE_INDENT_SEARCHED + 2)..i];
    let ticks = before.iter().rev().take_while(|&&c| c == '`').count();
    if ticks > 2 {
        return true;
    }
    let spaces = before[..before.len() - ticks]
        .iter()
        .rev()
        .take_while(|c| c.is_whitespace() && **c != '\n')
        .count();
    let line_start = i - ticks - spaces;
    let at_line_start = line_start == 0 || chars[line_start - 1] == '\n';
    !(at_line_start && marker_at(line_start))
}

/// How many characters of `window` to take: after the last paragraph break, else the last line
/// break (list items, code lines), else the last sentence end, else the last space, else all
/// of it.
fn best_cut(window: &[char], whole_rest_fits: bool) -> usize {
    if whole_rest_fits {
        return window.len();
    }
    let min = window.len() / 3;
    let paragraph = (min..window.len().saturating_sub(1))
        .rev()
        .find(|&i| window[i] == '\n' && window[i + 1] == '\n')
        .map(|i| i + 2);
    let line = || {
        (min..window.len())
            .rev()
            .find(|&i| window[i] == '\n')
            .map(|i| i + 1)
    };
    let sentence = || {
        (min..window.len().saturating_sub(1))
            .rev()
            .find(|&i| matches!(window[i], '.' | '!' | '?' | '\n') && window[i + 1].is_whitespace())
            .map(|i| i + 2)
    };
    let space = || {
        (min..window.len())
            .rev()
            .find(|&i| window[i].is_whitespace())
            .map(|i| i + 1)
    };
    paragraph
        .or_else(line)
        .or_else(sentence)
        .or_else(space)
        .unwrap_or(window.len())
        .clamp(1, window.len())
}

#[cfg(test)]
#[path = "render_randomized.rs"]
mod randomized_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    /// Random answer-like text: words (some very long, some multibyte), sentences,
    /// paragraphs and fenced code blocks.
    fn random_text(seed: u64) -> String {
        let mut state = seed.max(1);
        let words = [
            "engram",
            "brain",
            "Größe",
            "naïve",
            "日本語",
            "🦀",
            "a",
            "of",
            "retry",
        ];
        let mut text = String::new();
        let blocks = 1 + xorshift(&mut state) % 12;
        for _ in 0..blocks {
            match xorshift(&mut state) % 5 {
                0 => {
                    text.push_str("```rust\n");
                    for _ in 0..(xorshift(&mut state) % 60) {
                        text.push_str("let x = frobnicate(42); // 日本\n");
                    }
                    text.push_str("```\n\n");
                }
                1 => {
                    let n = 1 + xorshift(&mut state) % 3000;
                    text.push_str(&"w".repeat(n as usize));
                    text.push_str("\n\n");
                }
                _ => {
                    for _ in 0..(1 + xorshift(&mut state) % 40) {
                        for _ in 0..(3 + xorshift(&mut state) % 12) {
                            let word = words[(xorshift(&mut state) % words.len() as u64) as usize];
                            text.push_str(word);
                            text.push(' ');
                        }
                        text.push_str(". ");
                    }
                    text.push_str("\n\n");
                }
            }
        }
        text
    }

    #[test]
    fn short_text_is_one_message() {
        assert_eq!(split_message("Hello.", Limits::DISCORD), ["Hello."]);
    }

    #[test]
    fn prefers_paragraph_breaks() {
        let first = "a".repeat(1200);
        let second = "b".repeat(1200);
        let text = format!("{first}\n\n{second}");
        let parts = split_message(&text, Limits::DISCORD);
        assert_eq!(parts, [format!("{first}\n\n"), second]);
    }

    #[test]
    fn a_cut_fence_is_closed_and_reopened() {
        let code: String = (0..400).map(|i| format!("line {i}\n")).collect();
        let text = format!("Here:\n```python\n{code}```\nDone.");
        let parts = split_message(&text, Limits::DISCORD);
        assert!(parts.len() > 1);
        assert!(parts[0].ends_with("```"));
        assert!(parts[1].starts_with("```python\n"));
        for part in &parts {
            assert!(part.chars().count() <= 2000);
            let chars: Vec<char> = part.chars().collect();
            assert_eq!(fence_state(&chars, 0, chars.len(), None), None, "{part}");
        }
    }

    #[test]
    fn random_answers_split_within_limits_with_balanced_fences() {
        for seed in 1..=400u64 {
            let text = random_text(seed);
            let max = [64, 200, 2000, 3000][(seed % 4) as usize];
            let limits = Limits {
                max_chars: max,
                platform: Platform::Discord,
            };
            let parts = split_message(&text, limits);
            for part in &parts {
                assert!(
                    part.chars().count() <= max,
                    "seed {seed}: {} > {max}",
                    part.chars().count()
                );
                let chars: Vec<char> = part.chars().collect();
                assert_eq!(
                    fence_state(&chars, 0, chars.len(), None),
                    None,
                    "seed {seed}: a fence left open in {part:?}"
                );
            }
            let stripped: String = parts
                .concat()
                .replace("```rust\n", "")
                .replace("```", "")
                .replace('\n', "");
            let original: String = text
                .replace("```rust\n", "")
                .replace("```", "")
                .replace('\n', "");
            assert_eq!(stripped, original, "seed {seed}: text was lost or added");
        }
    }

    #[test]
    fn mass_mentions_cannot_ping() {
        let text = neutralise_mass_mentions("hey @everyone and @here, <!channel> <!here|here>");
        assert!(!text.contains("@everyone") && !text.contains("@here"));
        assert!(!text.contains("<!channel>") && !text.contains("<!here"));
        let group = neutralise_mass_mentions("ask <!subteam^S0ONCALL|@oncall> now");
        assert!(
            !group.contains("<!subteam^"),
            "a user group is many people: {group}"
        );
    }

    #[test]
    fn footer_lists_and_links_sources() {
        let sources = [
            FooterSource {
                n: 1,
                file: "handbook.pdf".into(),
                page: Some(3),
                heading: Some("Time off".into()),
                link: Some("https://discord.com/channels/1/2/3".into()),
            },
            FooterSource {
                n: 2,
                file: "faq.md".into(),
                page: None,
                heading: None,
                link: None,
            },
        ];
        let discord = sources_footer(&sources, Platform::Discord);
        assert_eq!(
            discord,
            "**Sources**\n[1] [handbook.pdf](<https://discord.com/channels/1/2/3>), p. 3 — Time off\n[2] faq.md"
        );
        let slack = sources_footer(&sources, Platform::Slack);
        assert!(slack.contains("<https://discord.com/channels/1/2/3|handbook.pdf>"));
    }

    #[test]
    fn code_is_cut_between_lines() {
        let code: String = (0..80)
            .map(|n| format!("let visitor_{n} = park(two);\n"))
            .collect();
        let text = format!("Here:\n\n```rust\n{code}```\n");
        let parts = split_message(
            &text,
            Limits {
                max_chars: 300,
                platform: Platform::Discord,
            },
        );
        assert!(parts.len() > 3);
        for n in 0..80 {
            let line = format!("let visitor_{n} = park(two);");
            assert!(
                parts.iter().any(|part| part.contains(&line)),
                "line {n} is whole in some message: {parts:#?}"
            );
        }
    }
}
