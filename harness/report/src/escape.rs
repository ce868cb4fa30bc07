//! Escaping of untrusted text (scenario names, peers, messages) for HTML and Markdown.
//!
//! Everything in a result can come from a scenario file or a cluster, so no renderer writes a
//! string into markup without passing it through here.

/// Escapes text for HTML element content and quoted attribute values: `& < > " '`.
///
/// ```
/// assert_eq!(
///     harness_report::escape::html(r#"<script>alert("x")</script>"#),
///     "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
/// );
/// ```
pub fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for an HTML attribute value that may span lines (e.g. a `title` tooltip):
/// like [`html`], with newlines kept as `&#10;` so browsers show them.
pub fn html_attr(text: &str) -> String {
    html(text).replace('\n', "&#10;")
}

/// A relative link target for evidence, or `None` when the path could smuggle a scheme
/// (`javascript:`, `data:`, `https:`) or is absolute: evidence links stay inside the report
/// directory.
pub fn relative_href(path: &str) -> Option<String> {
    let before_slash = path.split('/').next().unwrap_or_default();
    if path.is_empty()
        || path.starts_with('/')
        || path.starts_with('\\')
        || before_slash.contains(':')
    {
        return None;
    }
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            ' ' => out.push_str("%20"),
            '#' => out.push_str("%23"),
            '?' => out.push_str("%3F"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    Some(html(&out))
}

/// Escapes text for one cell of a GitHub-flavoured Markdown table: pipes, HTML, newlines.
pub fn markdown_cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\\' => out.push_str("\\\\"),
            '`' => out.push_str("\\`"),
            '*' => out.push_str("\\*"),
            '_' => out.push_str("\\_"),
            '[' => out.push_str("\\["),
            ']' => out.push_str("\\]"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Wraps text in a fenced code block whose fence cannot be closed by the text itself.
pub fn code_block(info: &str, text: &str) -> String {
    let longest_run = text
        .lines()
        .map(|l| l.trim_start().chars().take_while(|c| *c == '`').count())
        .max()
        .unwrap_or(0);
    let fence = "`".repeat(longest_run.max(2) + 1);
    let mut out = format!("{fence}{info}\n{text}");
    if !text.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&fence);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(
            html("<script>alert('x&y')</script>"),
            "&lt;script&gt;alert(&#39;x&amp;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(html("x/a → x/b"), "x/a → x/b");
        assert_eq!(html_attr("a\n\"b\""), "a&#10;&quot;b&quot;");
    }

    #[test]
    fn hrefs_stay_relative() {
        assert_eq!(
            relative_href("evidence/x a/trace.txt").as_deref(),
            Some("evidence/x%20a/trace.txt")
        );
        assert_eq!(relative_href("javascript:alert(1)"), None);
        assert_eq!(relative_href("https://evil.example/x"), None);
        assert_eq!(relative_href("/etc/passwd"), None);
        assert_eq!(
            relative_href("e/\"><script>").as_deref(),
            Some("e/&quot;&gt;&lt;script&gt;")
        );
    }

    #[test]
    fn markdown_cells_cannot_break_tables() {
        assert_eq!(markdown_cell("a|b<i>"), "a\\|b&lt;i&gt;");
        assert_eq!(markdown_cell("line\nnext"), "line<br>next");
    }

    #[test]
    fn code_blocks_outlast_their_content() {
        assert_eq!(code_block("text", "x\n"), "```text\nx\n```\n");
        assert_eq!(code_block("", "````\n"), "`````\n````\n`````\n");
    }
}
