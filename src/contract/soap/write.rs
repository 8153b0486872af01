//! Writing a SOAP document with the `soap` and `k` prefixes.

use super::*;

/// Builds XML text with the `soap` and `k` prefixes.
pub(super) struct Out(pub(super) String);

impl Out {
    pub(super) fn envelope() -> Self {
        let mut s = String::with_capacity(2048);
        s.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        let _ = write!(
            s,
            r#"<soap:Envelope xmlns:soap="{SOAP_ENV_NS}" xmlns:k="{KOMMUN_NS}"><soap:Body>"#
        );
        Out(s)
    }
    pub(super) fn node(&mut self, name: &str, f: impl FnOnce(&mut Self)) {
        let _ = write!(self.0, "<k:{name}>");
        f(self);
        let _ = write!(self.0, "</k:{name}>");
    }
    pub(super) fn opt_node<T>(&mut self, name: &str, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) {
        if let Some(v) = v {
            self.node(name, |o| f(o, v));
        }
    }
    pub(super) fn leaf(&mut self, name: &str, text: &str) {
        let _ = write!(self.0, "<k:{name}>{}</k:{name}>", escape(text));
    }
    pub(super) fn opt(&mut self, name: &str, text: Option<&str>) {
        if let Some(t) = text {
            self.leaf(name, t);
        }
    }
    pub(super) fn date(&mut self, name: &str, d: Date) {
        self.leaf(name, &format_date(d));
    }
    pub(super) fn opt_date(&mut self, name: &str, d: Option<Date>) {
        if let Some(d) = d {
            self.date(name, d);
        }
    }
    pub(super) fn boolean(&mut self, name: &str, b: bool) {
        self.leaf(name, if b { "true" } else { "false" });
    }
    pub(super) fn finish(mut self) -> String {
        self.0.push_str("</soap:Body></soap:Envelope>");
        self.0
    }
}
