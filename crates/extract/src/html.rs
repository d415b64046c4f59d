//! HTML to light Markdown: a single-pass, non-recursive tag scanner (linear time, no element
//! stack, so arbitrarily deep nesting is safe).

/// Does this decoded text look like an HTML document?
pub fn looks_like_html(text: &str) -> bool {
    let head: String = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .chars()
        .take(1024)
        .collect::<String>()
        .to_ascii_lowercase();
    head.starts_with("<!doctype html")
        || head.starts_with("<html")
        || head.contains("<head")
        || head.contains("<body")
        || head.contains("<p>")
}

/// Elements whose content is never text.
const SKIP_CONTENT: &[&str] = &["script", "style", "noscript", "template", "svg"];
/// Elements that start and end a paragraph (blank line around them).
const BLOCKS: &[&str] = &[
    "title",
    "p",
    "div",
    "section",
    "article",
    "header",
    "footer",
    "main",
    "nav",
    "aside",
    "blockquote",
    "pre",
    "ul",
    "ol",
    "dl",
    "table",
    "form",
    "figure",
    "figcaption",
    "hr",
    "address",
    "fieldset",
    "details",
    "summary",
];
/// Elements that end a line.
const LINES: &[&str] = &["br", "tr", "dt", "dd", "caption", "option"];

/// Builds the Markdown output, collapsing whitespace as a browser would.
#[derive(Debug, Default)]
struct Writer {
    out: String,
    /// A space is owed before the next word.
    pending_space: bool,
    /// Inside `<pre>`: keep whitespace.
    pre: bool,
    /// The current line is a table row (`| … |`).
    in_row: bool,
}

impl Writer {
    fn at_line_start(&self) -> bool {
        self.out.is_empty() || self.out.ends_with('\n')
    }

    fn text(&mut self, s: &str) {
        for c in s.chars() {
            if self.pre {
                self.out.push(if c == '\r' { '\n' } else { c });
                continue;
            }
            if c.is_whitespace() && c != '\u{a0}' {
                self.pending_space = true;
                continue;
            }
            if self.pending_space && !self.at_line_start() && !self.out.ends_with(' ') {
                self.out.push(' ');
            }
            self.pending_space = false;
            self.out.push(if c == '\u{a0}' { ' ' } else { c });
        }
    }

    fn trim_line_end(&mut self) {
        while self.out.ends_with(' ') || self.out.ends_with('\t') {
            self.out.pop();
        }
    }

    fn line_break(&mut self) {
        self.trim_line_end();
        self.pending_space = false;
        if !self.at_line_start() {
            self.out.push('\n');
        }
    }

    fn paragraph_break(&mut self) {
        self.line_break();
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    fn raw(&mut self, s: &str) {
        self.out.push_str(s);
        self.pending_space = false;
    }

    fn finish(mut self) -> String {
        self.trim_line_end();
        let trimmed = self.out.trim_end_matches('\n').len();
        self.out.truncate(trimmed);
        self.out
    }
}

/// Convert HTML to text with Markdown structure: `#` headings, `- ` list items, `| a | b |`
/// table rows, blank lines between paragraphs. Scripts, styles and comments are dropped.
pub fn to_text(html: &str) -> String {
    let mut w = Writer::default();
    let bytes = html.as_bytes();
    let mut i = 0;
    let mut text_start = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            i += 1;
            continue;
        }
        // Flush the text before this '<'.
        w.text(&decode_entities(&html[text_start..i]));
        match parse_tag(html, i) {
            Markup::Comment(end) | Markup::Other(end) => {
                i = end;
            }
            Markup::Tag { name, closing, end } => {
                i = end;
                let lower = name.to_ascii_lowercase();
                if !closing && SKIP_CONTENT.contains(&lower.as_str()) {
                    i = skip_past_close(html, i, &lower);
                } else {
                    handle_tag(&mut w, &lower, closing);
                }
            }
            Markup::Literal => {
                w.text("<");
                i += 1;
            }
        }
        text_start = i;
    }
    w.text(&decode_entities(&html[text_start..]));
    w.finish()
}

fn handle_tag(w: &mut Writer, name: &str, closing: bool) {
    let heading = match name.as_bytes() {
        [b'h', d @ b'1'..=b'6'] => Some((d - b'0') as usize),
        _ => None,
    };
    if let Some(level) = heading {
        w.paragraph_break();
        if !closing {
            w.raw(&"#".repeat(level));
            w.raw(" ");
        }
        return;
    }
    match name {
        "li" => {
            w.line_break();
            if !closing {
                w.raw("- ");
            }
        }
        "tr" => {
            if closing && w.in_row {
                w.trim_line_end();
                w.raw(" |");
                w.in_row = false;
            }
            w.line_break();
        }
        "td" | "th" if !closing => {
            if !w.in_row {
                w.line_break();
                w.raw("|");
                w.in_row = true;
            } else {
                w.trim_line_end();
                w.raw(" |");
            }
            w.raw(" ");
        }
        "pre" => {
            w.paragraph_break();
            w.pre = !closing;
        }
        "table" => {
            if w.in_row {
                w.trim_line_end();
                w.raw(" |");
                w.in_row = false;
            }
            w.paragraph_break();
        }
        _ if BLOCKS.contains(&name) => w.paragraph_break(),
        _ if LINES.contains(&name) => w.line_break(),
        _ => {}
    }
}

/// What starts at a `<`.
enum Markup<'a> {
    Tag {
        name: &'a str,
        closing: bool,
        end: usize,
    },
    /// `<!-- … -->`; the index after it.
    Comment(usize),
    /// `<!DOCTYPE …>`, `<?xml …?>`, `<![CDATA[`-ish: skipped; the index after it.
    Other(usize),
    /// A `<` that starts no markup (e.g. `a < b`).
    Literal,
}

fn parse_tag(html: &str, start: usize) -> Markup<'_> {
    let bytes = html.as_bytes();
    let rest = &html[start..];
    if let Some(body) = rest.strip_prefix("<!--") {
        let end = body.find("-->").map_or(html.len(), |p| start + 4 + p + 3);
        return Markup::Comment(end);
    }
    let mut j = start + 1;
    if j < bytes.len() && (bytes[j] == b'!' || bytes[j] == b'?') {
        let end = rest.find('>').map_or(html.len(), |p| start + p + 1);
        return Markup::Other(end);
    }
    let closing = j < bytes.len() && bytes[j] == b'/';
    if closing {
        j += 1;
    }
    let name_start = j;
    while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'-') {
        j += 1;
    }
    if j == name_start || !bytes[name_start].is_ascii_alphabetic() {
        return Markup::Literal;
    }
    let name = &html[name_start..j];
    // Skip attributes up to the closing '>', honouring quotes.
    let mut quote: Option<u8> = None;
    while j < bytes.len() {
        let b = bytes[j];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => break,
            None => {}
        }
        j += 1;
    }
    Markup::Tag {
        name,
        closing,
        end: (j + 1).min(html.len()),
    }
}

/// Index just after `</name…>` (case-insensitive), or the end of input.
fn skip_past_close(html: &str, from: usize, name: &str) -> usize {
    let bytes = html.as_bytes();
    let mut i = from;
    while let Some(p) = memchr_lt(&bytes[i..]) {
        let at = i + p;
        let after = at + 2 + name.len();
        if bytes.get(at + 1) == Some(&b'/')
            && after <= bytes.len()
            && bytes[at + 2..after].eq_ignore_ascii_case(name.as_bytes())
            && bytes.get(after).is_none_or(|b| !b.is_ascii_alphanumeric())
        {
            return html[after..]
                .find('>')
                .map_or(html.len(), |p| after + p + 1);
        }
        i = at + 1;
    }
    html.len()
}

fn memchr_lt(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'<')
}

/// Decode character references: the common named ones and all numeric ones.
pub fn decode_entities(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('&') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let semi = rest[1..]
            .bytes()
            .take(12)
            .position(|b| b == b';')
            .map(|p| p + 1);
        let decoded = semi.and_then(|semi| entity(&rest[1..semi]).map(|c| (c, semi + 1)));
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        return Some(
            char::from_u32(code)
                .filter(|&c| c != '\0')
                .unwrap_or('\u{FFFD}'),
        );
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "bull" => '•',
        "middot" => '·',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "sect" => '§',
        "deg" => '°',
        "times" => '×',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_html() {
        assert!(looks_like_html("\u{feff}  <!DOCTYPE html><html>"));
        assert!(looks_like_html("<HTML><body>x</body></HTML>"));
        assert!(looks_like_html("<div>\n<p>hello</p></div>"));
        assert!(!looks_like_html("# Title\n\nplain a < b"));
    }

    #[test]
    fn structure_becomes_markdown() {
        let html = r#"<!doctype html><html><head><title>T</title>
            <style>p { color: red }</style></head><body>
            <h1>Main  title</h1><p>First <b>bold</b>
            paragraph.</p><p>Second<br>line</p>
            <ul><li>one</li><li>two &amp; three</li></ul>
            <h2 class="x">Sub</h2>
            <table><tr><th>Name</th><th>Age</th></tr><tr><td>Ann</td><td>42</td></tr></table>
            <script>var x = "<p>not text</p>";</script><!-- comment <p>no</p> -->
            <p>a &lt; b &gt; c &quot;q&quot; &#39;s&#39; &#x41;&#66;&nbsp;end</p>
            </body></html>"#;
        assert_eq!(
            to_text(html),
            "T\n\n# Main title\n\nFirst bold paragraph.\n\nSecond\nline\n\n- one\n- two & three\n\n\
             ## Sub\n\n| Name | Age |\n| Ann | 42 |\n\na < b > c \"q\" 's' AB end"
        );
    }

    #[test]
    fn script_case_and_unterminated() {
        assert_eq!(to_text("<p>a<SCRIPT>x</script >b</p>"), "ab");
        assert_eq!(to_text("<p>a<script>never closed"), "a");
        assert_eq!(to_text("x < y and <p"), "x < y and");
        assert_eq!(
            to_text("fish &chips; &bogus; &#xZZ;"),
            "fish &chips; &bogus; &#xZZ;"
        );
    }

    #[test]
    fn deep_nesting_is_linear() {
        let depth = 100_000;
        let html = format!(
            "<html><body>{}The needle sentence.{}</body></html>",
            "<div>".repeat(depth),
            "</div>".repeat(depth)
        );
        assert_eq!(to_text(&html), "The needle sentence.");
    }
}
