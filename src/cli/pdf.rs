//! A small PDF writer for text documents (the DPO's extract): pages of lines in the standard
//! Helvetica fonts, which every reader has, so nothing is embedded. Text is encoded in
//! WinAnsiEncoding, which holds Swedish letters and `§`; anything else becomes `?`.

use std::fmt::Write as _;

/// A4 landscape, in points.
const PAGE_WIDTH: f32 = 842.0;
const PAGE_HEIGHT: f32 = 595.0;
const MARGIN: f32 = 40.0;

/// One line of the document.
#[derive(Debug, Clone)]
pub struct Line {
    pub text: String,
    pub bold: bool,
    pub size: f32,
    /// Points from the left margin.
    pub indent: f32,
}

impl Line {
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            bold: false,
            size: 8.5,
            indent: 0.0,
        }
    }
    pub fn heading(text: impl Into<String>, size: f32) -> Self {
        Self {
            text: text.into(),
            bold: true,
            size,
            indent: 0.0,
        }
    }
    pub fn indented(mut self, by: f32) -> Self {
        self.indent = by;
        self
    }
    pub fn bold(mut self) -> Self {
        self.bold = true;
        self
    }
}

/// The document: lines laid out top to bottom, a new page when one is full, each page
/// numbered in its footer with `footer`.
pub fn document(lines: &[Line], footer: &str) -> Vec<u8> {
    // Lay out.
    let mut pages: Vec<String> = Vec::new();
    let mut page = String::new();
    let mut y = PAGE_HEIGHT - MARGIN;
    for line in lines {
        let leading = line.size * 1.35;
        for part in wrap(
            &line.text,
            line.size,
            PAGE_WIDTH - 2.0 * MARGIN - line.indent,
        ) {
            if y - leading < MARGIN + 20.0 {
                pages.push(std::mem::take(&mut page));
                y = PAGE_HEIGHT - MARGIN;
            }
            y -= leading;
            let font = if line.bold { "F2" } else { "F1" };
            let _ = writeln!(
                page,
                "BT /{font} {:.1} Tf {:.1} {:.1} Td ({}) Tj ET",
                line.size,
                MARGIN + line.indent,
                y,
                escape(&part)
            );
        }
    }
    pages.push(page);
    let count = pages.len();

    // Objects: 1 catalog, 2 page tree, 3 and 4 fonts, then a page and its content per page.
    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        Vec::new(), // the page tree, once the pages' numbers are known
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    ];
    let mut kids = Vec::new();
    for (i, content) in pages.iter().enumerate() {
        let mut content = content.clone();
        let _ = writeln!(
            content,
            "BT /F1 7.0 Tf {:.1} {:.1} Td ({}) Tj ET",
            MARGIN,
            MARGIN - 10.0,
            escape(&format!("{footer} — page {} of {count}", i + 1))
        );
        let bytes = encode(&content);
        let page_no = objects.len() + 1;
        let content_no = page_no + 1;
        kids.push(format!("{page_no} 0 R"));
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] \
                 /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {content_no} 0 R >>"
            )
            .into_bytes(),
        );
        let mut stream = format!("<< /Length {} >>\nstream\n", bytes.len()).into_bytes();
        stream.extend_from_slice(&bytes);
        stream.extend_from_slice(b"\nendstream");
        objects.push(stream);
    }
    objects[1] = format!(
        "<< /Type /Pages /Kids [{}] /Count {count} >>",
        kids.join(" ")
    )
    .into_bytes();

    // The file: header, objects, cross-reference table, trailer.
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(object);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for o in offsets {
        let _ = writeln!(table, "{o:010} 00000 n ");
    }
    let _ = write!(
        table,
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    );
    out.extend_from_slice(table.as_bytes());
    out
}

/// Splits text into lines that fit `width` points (Helvetica's widths, approximated by an
/// average: the extract's text is mostly codes and digits).
fn wrap(text: &str, size: f32, width: f32) -> Vec<String> {
    let per_line = ((width / (size * 0.52)) as usize).max(10);
    let mut out = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let len = line.chars().count() + word.chars().count() + 1;
        if !line.is_empty() && len > per_line {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        // A word longer than a line (a hash) is cut.
        let mut word = word.to_owned();
        while word.chars().count() > per_line {
            let rest: String = word.chars().skip(per_line).collect();
            let head: String = word.chars().take(per_line).collect();
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
            }
            out.push(head);
            word = rest;
        }
        line.push_str(&word);
    }
    out.push(line);
    out
}

/// A PDF string's content: the delimiters escaped, control characters dropped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Content text in WinAnsiEncoding (Windows-1252).
fn encode(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| match c {
            '\u{20}'..='\u{7e}' | '\n' => c as u8,
            '\u{a0}'..='\u{ff}' => c as u32 as u8,
            '€' => 0x80,
            '–' => 0x96,
            '—' => 0x97,
            '‘' => 0x91,
            '’' => 0x92,
            '“' => 0x93,
            '”' => 0x94,
            '•' => 0x95,
            _ => b'?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cross_reference_table_points_at_each_object() {
        let lines: Vec<Line> = (0..200)
            .map(|i| Line::text(format!("rad {i}: åäö § (parentes) \\ slut")))
            .collect();
        let pdf = document(&lines, "test");
        assert!(pdf.starts_with(b"%PDF-1.4"));
        assert!(pdf.ends_with(b"%%EOF\n"));
        let text = String::from_utf8_lossy(&pdf);
        let start: usize = text
            .rsplit("startxref\n")
            .next()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(pdf[start..].starts_with(b"xref"));
        let table = &text[start..];
        for (i, row) in table
            .lines()
            .skip(3)
            .take_while(|l| l.ends_with(" n "))
            .enumerate()
        {
            let offset: usize = row[..10].parse().unwrap();
            assert!(
                pdf[offset..].starts_with(format!("{} 0 obj", i + 1).as_bytes()),
                "object {}",
                i + 1
            );
        }
        // 200 lines do not fit one page.
        assert!(
            text.contains("/Count 5") || text.contains("/Count 4"),
            "{}",
            &text[..400]
        );
        // Swedish letters in WinAnsi, delimiters escaped.
        assert!(pdf.windows(3).any(|w| w == [0xe5, 0xe4, 0xf6]));
        assert!(text.contains("\\(parentes\\) \\\\ slut"));
    }
}
