//! The tracing layer of every process: each event becomes a text line
//! (stderr, the log file: [`super::record`]'s format) and/or a journal entry
//! ([`super::journal`]), with the fields of its enclosing spans and of its
//! task.
//!
//! A task's fields ([`TaskFields`], smtpd's `sid` and `client_ip` for a
//! session) are what a span around the task would add to each of its lines,
//! without a span: a span costs each session about 300 bytes in the
//! subscriber's registry for as long as it lives (10,000 idle sessions: 3
//! MB) and thousands of instructions to make and to enter at every poll.
//! [`WithFields`] keeps the task's values as they are (no text made in
//! advance: nothing allocated) and points a thread-local at them while it
//! polls its future; events logged meanwhile, wherever in the code, carry
//! them, formatted then.

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer;
use tracing_subscriber::registry::LookupSpan;

use super::journal::{self, Journal};
use super::{emit_text, record, Output, Timestamp};

/// Writes every event to the text output and/or the journal.
pub(super) struct Lines {
    /// The process name, in text lines and as `SYSLOG_IDENTIFIER`.
    pub name: &'static str,
    pub pid: u32,
    /// Where text lines go, if anywhere.
    pub text: Option<Output>,
    /// The journal, if used.
    pub journal: Option<Journal>,
}

/// A span's fields, formatted once when the span is made.
#[derive(Default)]
struct SpanFields {
    /// `a=b c=d`.
    text: String,
    /// Journal fields.
    journal: Vec<u8>,
}

/// What an event is written with, kept from one event to the next (the
/// layer runs for every log line: allocating them each time showed in
/// profiles).
#[derive(Default)]
struct Buffers {
    line: String,
    entry: Vec<u8>,
    message: String,
    value: String,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::default();
    /// The fields of the task being polled on this thread, if any
    /// ([`WithFields`]).
    static TASK: Cell<Option<*const dyn TaskFields>> = const { Cell::new(None) };
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Lines {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: layer::Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        self.record_span(&mut fields, |v| attrs.record(v));
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: layer::Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(fields) = ext.get_mut::<SpanFields>() {
            self.record_span(fields, |v| values.record(v));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: layer::Context<'_, S>) {
        // A value whose formatting logs would find the buffers taken; a
        // thread whose locals are being destroyed has none.
        let written = BUFFERS.try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut b) => self.write(event, &ctx, &mut b),
            Err(_) => self.write(event, &ctx, &mut Buffers::default()),
        });
        if written.is_err() {
            self.write(event, &ctx, &mut Buffers::default());
        }
    }
}

impl Lines {
    fn record_span(&self, fields: &mut SpanFields, record: impl FnOnce(&mut Visitor<'_>)) {
        let mut message = String::new();
        let mut value = String::new();
        let mut v = Visitor {
            text: self.text.is_some().then_some(&mut fields.text),
            pairs: 0,
            journal: self.journal.is_some().then_some(&mut fields.journal),
            message: &mut message,
            value: &mut value,
        };
        v.pairs = usize::from(v.text.as_ref().is_some_and(|t| !t.is_empty()));
        record(&mut v);
    }

    fn write<S: Subscriber + for<'a> LookupSpan<'a>>(
        &self,
        event: &Event<'_>,
        ctx: &layer::Context<'_, S>,
        b: &mut Buffers,
    ) {
        let meta = event.metadata();
        let (text, journal) = (self.text.is_some(), self.journal.is_some());
        b.line.clear();
        b.entry.clear();
        b.message.clear();
        if text {
            let _ = write!(
                b.line,
                "{} {}[{}]: {} ",
                Timestamp(SystemTime::now()),
                self.name,
                self.pid,
                meta.level()
            );
        }
        if journal {
            journal::put(&mut b.entry, "PRIORITY", journal::priority(meta.level()));
            journal::put(&mut b.entry, "SYSLOG_IDENTIFIER", self.name.as_bytes());
        }
        let _ = TASK.try_with(|task| {
            let Some(task) = task.get() else {
                return;
            };
            // SAFETY: the pointer is set only by `WithFields` while it polls
            // or drops its future on this thread, to its own fields, which
            // it holds (pinned) until then; it puts the previous pointer
            // back before it returns or unwinds ([`Current`]).
            #[allow(unsafe_code)]
            let task = unsafe { &*task };
            let mut v = Visitor::new(b, text, journal);
            task.each(&mut |name, value| v.formatted(name, format_args!("{value}")));
            if let Some(line) = v.text.filter(|_| v.pairs > 0) {
                line.push_str(": ");
            }
        });
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                let ext = span.extensions();
                let Some(fields) = ext.get::<SpanFields>() else {
                    continue;
                };
                if text && !fields.text.is_empty() {
                    b.line.push_str(&fields.text);
                    b.line.push_str(": ");
                }
                b.entry.extend_from_slice(&fields.journal);
            }
        }
        let mut v = Visitor::new(b, text, journal);
        event.record(&mut v);
        let pairs = v.pairs;
        if let Some(out) = &self.text {
            if !b.message.is_empty() {
                if pairs > 0 {
                    b.line.push(' ');
                }
                b.line.push_str(&b.message);
            }
            b.line.push('\n');
            emit_text(out, b.line.as_bytes());
        }
        if let Some(j) = &self.journal {
            journal::put(&mut b.entry, "MESSAGE", b.message.as_bytes());
            journal::put(&mut b.entry, "TARGET", meta.target().as_bytes());
            if let Some(file) = meta.file() {
                journal::put(&mut b.entry, "CODE_FILE", file.as_bytes());
            }
            if let Some(line) = meta.line() {
                b.value.clear();
                let _ = write!(b.value, "{line}");
                journal::put(&mut b.entry, "CODE_LINE", b.value.as_bytes());
            }
            // A journal that went away loses the line; the process goes on.
            let _ = j.send(&b.entry);
        }
    }
}

/// Gathers fields as text pairs and journal fields; the message apart.
struct Visitor<'a> {
    /// Text pairs are appended here, separated by spaces.
    text: Option<&'a mut String>,
    /// Pairs written so far (a space goes before the next).
    pairs: usize,
    journal: Option<&'a mut Vec<u8>>,
    message: &'a mut String,
    /// Scratch for a value's text.
    value: &'a mut String,
}

impl<'a> Visitor<'a> {
    /// A visitor writing into `b`: its text line and journal entry when
    /// `text` and `journal` ask for them.
    fn new(b: &'a mut Buffers, text: bool, journal: bool) -> Self {
        Visitor {
            text: text.then_some(&mut b.line),
            pairs: 0,
            journal: journal.then_some(&mut b.entry),
            message: &mut b.message,
            value: &mut b.value,
        }
    }

    fn field(&mut self, name: &str, value: &str) {
        // The `log` crate's metadata, when its records come through tracing.
        if name.starts_with("log.") {
            return;
        }
        if let Some(t) = self.text.as_deref_mut() {
            if self.pairs > 0 {
                t.push(' ');
            }
            t.push_str(name);
            t.push('=');
            record::write_value(t, value);
        }
        self.pairs += 1;
        if let Some(j) = self.journal.as_deref_mut() {
            journal::put(j, name, value.as_bytes());
        }
    }
}

impl Visitor<'_> {
    /// A field whose value is formatted first (in the scratch buffer).
    fn formatted(&mut self, name: &str, value: fmt::Arguments<'_>) {
        let mut v = std::mem::take(self.value);
        v.clear();
        let _ = v.write_fmt(value);
        self.field(name, &v);
        *self.value = v;
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.field(field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%x` fields arrive here as Debug-that-is-Display, messages as
        // format_args: both print their text as is.
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.formatted(field.name(), format_args!("{value:?}"));
        }
    }
}

/// Fields every line a task logs carries, as a span's would (see the
/// module's documentation): in text lines before the spans' fields, ended
/// by `:`; in the journal as fields of their own.
pub trait TaskFields: Send + 'static {
    /// Calls `field` with each field's name and value, in order.
    fn each(&self, field: &mut dyn FnMut(&'static str, &dyn fmt::Display));
}

/// `future`, with `fields` on every line logged while it runs.
pub fn with_fields<T: TaskFields, F: Future>(fields: T, future: F) -> WithFields<T, F> {
    WithFields {
        fields,
        inner: ManuallyDrop::new(future),
    }
}

/// A future whose log lines carry [`TaskFields`].
pub struct WithFields<T: TaskFields, F> {
    fields: T,
    /// Pinned with `WithFields` (never moved out); dropped in `drop`, with
    /// the fields in place for what it logs then.
    inner: ManuallyDrop<F>,
}

/// The task's fields set on this thread until dropped, then the previous
/// ones back (a future polled from within another's poll).
struct Current(Option<*const dyn TaskFields>);

impl Current {
    fn enter(fields: &dyn TaskFields) -> Current {
        Current(TASK.with(|t| t.replace(Some(fields as *const dyn TaskFields))))
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        TASK.with(|t| t.set(self.0));
    }
}

impl<T: TaskFields, F: Future> Future for WithFields<T, F> {
    type Output = F::Output;

    #[allow(unsafe_code)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is structurally pinned: it is never moved out of
        // `self` (only dropped in place, in `drop`); `fields` is not pinned
        // and only read.
        let this = unsafe { self.get_unchecked_mut() };
        let _current = Current::enter(&this.fields);
        unsafe { Pin::new_unchecked(&mut *this.inner) }.poll(cx)
    }
}

impl<T: TaskFields, F> Drop for WithFields<T, F> {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        let _current = Current::enter(&self.fields);
        // SAFETY: dropped once, here; never used again.
        unsafe { ManuallyDrop::drop(&mut self.inner) }
    }
}
