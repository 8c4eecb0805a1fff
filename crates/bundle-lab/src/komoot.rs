//! The komoot challenge CSV format: `timestamp,user_id,friend_id,friend_name` in,
//! `notification_sent,timestamp_first_tour,tours,receiver_id,message` out. RFC 4180
//! quoting both ways (names hold commas, quotes, any UTF-8), UTC times written
//! `YYYY-MM-DD HH:MM:SS`. The header line is optional on input.
//!
//! Reading parses the file in memory and borrows each row's fields instead of
//! allocating, because the replay is meant to run a million rows a second.

use herald_core::bundle::UnixSecs;
use std::io;

/// The output header (contract §8).
pub const OUTPUT_HEADER: [&str; 5] = [
    "notification_sent",
    "timestamp_first_tour",
    "tours",
    "receiver_id",
    "message",
];

/// One input row, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TourRef<'a> {
    pub at: UnixSecs,
    pub user_id: &'a str,
    pub friend_id: &'a str,
    pub friend_name: &'a str,
}

/// A row that was skipped, with its 1-based line number and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub line: u64,
    pub reason: String,
}

impl std::fmt::Display for BadRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses `YYYY-MM-DD HH:MM:SS` (also `T` as separator), UTC. Strict: a calendar date
/// that does not exist is refused, so a typo never shifts a tour silently.
pub fn parse_timestamp(s: &str) -> Option<UnixSecs> {
    let b = s.trim().as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b' ' && b[10] != b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mdays = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > mdays[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || se > 59
    {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Formats an instant as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn format_timestamp(t: UnixSecs) -> String {
    let mut buf = [0u8; 19];
    // The buffer holds only ASCII digits and separators.
    String::from_utf8_lossy(write_timestamp(t, &mut buf)).into_owned()
}

/// Formats into a caller's buffer without allocating: the writer calls this for two
/// fields of every output row. Years outside 0..=9999 are clamped to 4 digits' range.
pub fn write_timestamp(t: UnixSecs, buf: &mut [u8; 19]) -> &[u8] {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let y = y.clamp(0, 9999);
    let mut put = |at: usize, v: i64, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, y, 4);
    put(5, m, 2);
    put(8, d, 2);
    put(11, secs / 3600, 2);
    put(14, secs % 3600 / 60, 2);
    put(17, secs % 60, 2);
    buf[4] = b'-';
    buf[7] = b'-';
    buf[10] = b' ';
    buf[13] = b':';
    buf[16] = b':';
    buf
}

/// Parses the fixed `YYYY-MM-DD HH:MM:SS` layout straight from bytes (no trimming, no
/// UTF-8 step): the reader's fast path. Anything else falls back to [`parse_timestamp`].
fn parse_timestamp_fast(b: &[u8], cache: &mut (u64, i64)) -> Option<UnixSecs> {
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let d2 = |i: usize| -> Option<i64> {
        let (x, y) = (b[i].wrapping_sub(b'0'), b[i + 1].wrapping_sub(b'0'));
        (x < 10 && y < 10).then(|| i64::from(x) * 10 + i64::from(y))
    };
    // Rows of one file mostly share their date: remember the last one.
    let date = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[5], b[6], b[8], b[9]]);
    let days = if date == cache.0 && cache.0 != 0 {
        cache.1
    } else {
        let (y, mo, d) = (d2(0)? * 100 + d2(2)?, d2(5)?, d2(8)?);
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mdays = match mo {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        if d < 1 || d > mdays {
            return None;
        }
        let days = days_from_civil(y, mo, d);
        *cache = (date, days);
        days
    };
    let (h, mi, se) = (d2(11)?, d2(14)?, d2(17)?);
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// Reads every row of `input`, calling `on_row` for good ones and `on_bad` for rows
/// that are skipped. A first line starting with `timestamp` is taken as the header.
/// I/O errors stop the read; malformed rows (bad UTF-8, a wrong field count, a bad
/// timestamp, an empty id or name) only skip their row.
pub fn read_tours<R: io::Read>(
    input: R,
    on_row: impl FnMut(TourRef<'_>),
    on_bad: impl FnMut(BadRow),
) -> io::Result<()> {
    read_tours_with_progress(input, on_row, on_bad, |_| {})
}

/// [`read_tours`], telling `progress` the bytes consumed after each chunk (1 MiB).
/// The input is read in chunks into one reused buffer, so memory stays flat whatever
/// the file's size; a record cut by a chunk's end waits for the next chunk.
pub fn read_tours_with_progress<R: io::Read>(
    mut input: R,
    mut on_row: impl FnMut(TourRef<'_>),
    mut on_bad: impl FnMut(BadRow),
    mut progress: impl FnMut(u64),
) -> io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let mut parser = TourParser::default();
    let mut buf: Vec<u8> = Vec::with_capacity(2 * CHUNK);
    let mut done = 0u64;
    loop {
        let start = buf.len();
        buf.resize(start + CHUNK, 0);
        let got = loop {
            match input.read(&mut buf[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        buf.truncate(start + got);
        let eof = got == 0;
        let used = parser.feed(&buf, eof, &mut on_row, &mut on_bad);
        done += used as u64;
        progress(done);
        buf.drain(..used);
        if eof {
            return Ok(());
        }
    }
}

/// Where a field's bytes are: a slice of the input, or unescaped into scratch space
/// (a quoted field with `""` or text after its closing quote).
#[derive(Clone, Copy, Default)]
struct Span {
    start: usize,
    end: usize,
    scratch: bool,
}

/// The first position at or after `from` holding a comma, LF or CR (or `buf.len()`),
/// eight bytes at a time (the classic "has zero byte" bit trick, exact per byte).
fn find_delimiter(buf: &[u8], from: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let mut i = from;
    while let Some(chunk) = buf.get(i..i + 8) {
        let x = u64::from_le_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]);
        let hits = zero_bytes(x ^ (LO * u64::from(b',')))
            | zero_bytes(x ^ (LO * u64::from(b'\n')))
            | zero_bytes(x ^ (LO * u64::from(b'\r')));
        if hits != 0 {
            // The lowest flagged byte is exact (borrows only run upward past a hit).
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < buf.len() && !matches!(buf[i], b',' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// Parses a whole file held in memory: see [`TourParser::feed`].
pub fn parse_tours(
    buf: &[u8],
    mut on_row: impl FnMut(TourRef<'_>),
    mut on_bad: impl FnMut(BadRow),
) {
    TourParser::default().feed(buf, true, &mut on_row, &mut on_bad);
}

/// The reader's state between chunks: the line count, whether the header may still
/// come, the last date seen, and scratch space for unescaped fields.
#[derive(Default)]
pub struct TourParser {
    line: u64,
    started: bool,
    /// The next record is the file's first (it may be the header).
    first: bool,
    ts_cache: (u64, i64),
    spans: [Span; 4],
    scratch: [Vec<u8>; 4],
}

impl TourParser {
    /// Parses the records in `buf`: RFC 4180 (quoted fields may hold commas, doubled
    /// quotes and line breaks; CRLF, LF or CR line ends; a UTF-8 BOM at the start is
    /// skipped; blank lines are ignored). Unless `eof`, a record that runs to the end
    /// of `buf` is left for the next call with more input. Returns the bytes used.
    ///
    /// Hand-rolled rather than a general CSV reader because it runs a million rows a
    /// second: unquoted fields are borrowed from `buf` without copying, delimiters
    /// are found eight bytes at a time, UTF-8 is checked once per chunk, and the date
    /// part of consecutive timestamps is converted once.
    pub fn feed(
        &mut self,
        buf: &[u8],
        eof: bool,
        on_row: &mut impl FnMut(TourRef<'_>),
        on_bad: &mut impl FnMut(BadRow),
    ) -> usize {
        let n = buf.len();
        let mut pos = 0;
        if !self.started {
            if !eof && n < 3 {
                return 0;
            }
            self.started = true;
            self.line = 1;
            if buf.starts_with(b"\xEF\xBB\xBF") {
                pos = 3;
            }
            // The header test below applies to the first record only.
            self.ts_cache = (0, 0);
            self.first = true;
        }
        // Valid UTF-8 as a whole (the usual case): fields are then sliced as text
        // without checking each again (commas, quotes and line ends are ASCII, so
        // every field starts and ends on a character boundary).
        let whole = match std::str::from_utf8(buf) {
            Ok(text) => Some(text),
            // A chunk may end inside a character: its complete prefix still counts.
            Err(e) if !eof && e.error_len().is_none() => buf
                .get(..e.valid_up_to())
                .and_then(|b| std::str::from_utf8(b).ok()),
            Err(_) => None,
        };
        let mut line = self.line;
        while pos < n {
            let rec_start = pos;
            let rec_line = line;
            // Whether the record may go on in the next chunk.
            let cut = |at: usize| !eof && at >= n;
            // Blank line: not a record.
            match buf[pos] {
                b'\n' => {
                    pos += 1;
                    line += 1;
                    continue;
                }
                b'\r' => {
                    if cut(pos + 1) {
                        break;
                    }
                    pos += if buf.get(pos + 1) == Some(&b'\n') {
                        2
                    } else {
                        1
                    };
                    line += 1;
                    continue;
                }
                _ => {}
            }
            let mut nfields = 0usize;
            let mut all_blank = true;
            let mut complete = true;
            loop {
                // One field starting at `pos`.
                let idx = nfields;
                nfields += 1;
                let mut span = Span {
                    start: pos,
                    end: pos,
                    scratch: false,
                };
                if pos < n && buf[pos] == b'"' {
                    all_blank = false;
                    // Quoted: up to the closing quote; `""` is one quote.
                    let content = pos + 1;
                    let mut i = content;
                    let mut escaped = false;
                    let close = loop {
                        match buf[i..].iter().position(|&c| c == b'"') {
                            Some(q) if buf.get(i + q + 1) == Some(&b'"') => {
                                escaped = true;
                                i += q + 2;
                            }
                            Some(q) => break i + q,
                            None => break n, // unterminated: runs to the end
                        }
                    };
                    // A closing quote as the chunk's last byte may be half of `""`.
                    if cut(close + 1) {
                        complete = false;
                        break;
                    }
                    line += buf[content..close].iter().filter(|&&c| c == b'\n').count() as u64;
                    // Text after the closing quote belongs to the field, as in most
                    // readers.
                    let tail_start = (close + 1).min(n);
                    let after = find_delimiter(buf, tail_start);
                    if escaped || after > tail_start {
                        if idx < 4 {
                            let out = &mut self.scratch[idx];
                            out.clear();
                            let mut j = content;
                            while j < close {
                                out.push(buf[j]);
                                j += if buf[j] == b'"' { 2 } else { 1 };
                            }
                            out.extend_from_slice(&buf[tail_start..after]);
                            span = Span {
                                start: 0,
                                end: out.len(),
                                scratch: true,
                            };
                        }
                    } else {
                        span = Span {
                            start: content,
                            end: close,
                            scratch: false,
                        };
                    }
                    pos = after;
                } else {
                    let i = find_delimiter(buf, pos);
                    if i > pos {
                        all_blank &= buf[pos..i].iter().all(u8::is_ascii_whitespace);
                    }
                    span.end = i;
                    pos = i;
                }
                if idx < 4 {
                    self.spans[idx] = span;
                }
                // What ends the field: a comma (another field follows) or the line.
                // A CR as the chunk's last byte may be half of a CRLF.
                if cut(pos) || (pos < n && buf[pos] == b'\r' && cut(pos + 1)) {
                    complete = false;
                    break;
                }
                if pos < n && buf[pos] == b',' {
                    pos += 1;
                    continue;
                }
                if pos < n {
                    if buf[pos] == b'\r' && buf.get(pos + 1) == Some(&b'\n') {
                        pos += 1;
                    }
                    pos += 1;
                    line += 1;
                }
                break;
            }
            if !complete {
                pos = rec_start;
                line = rec_line;
                break;
            }
            let (spans, scratch) = (&self.spans, &self.scratch);
            let field = |i: usize| -> Field<'_> {
                let s = spans[i];
                if s.scratch {
                    Field::Bytes(&scratch[i][..s.end])
                } else {
                    match whole.and_then(|w| w.get(s.start..s.end)) {
                        Some(text) => Field::Text(text),
                        None => Field::Bytes(&buf[s.start..s.end]),
                    }
                }
            };
            let is_first = std::mem::replace(&mut self.first, false);
            if is_first
                && field(0)
                    .bytes()
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"timestamp")
            {
                continue;
            }
            if nfields == 1 && all_blank {
                continue; // a line of spaces is not a row
            }
            if nfields != 4 {
                on_bad(BadRow {
                    line: rec_line,
                    reason: format!(
                        "expected 4 fields (timestamp,user_id,friend_id,friend_name), found {nfields}"
                    ),
                });
                continue;
            }
            match check([field(0), field(1), field(2), field(3)], &mut self.ts_cache) {
                Ok(row) => on_row(row),
                Err(reason) => on_bad(BadRow {
                    line: rec_line,
                    reason,
                }),
            }
        }
        self.line = line;
        pos
    }
}

/// A field's content: text already known to be UTF-8, or bytes still to check.
#[derive(Clone, Copy)]
enum Field<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl<'a> Field<'a> {
    fn bytes(self) -> &'a [u8] {
        match self {
            Field::Text(s) => s.as_bytes(),
            Field::Bytes(b) => b,
        }
    }
    fn text(self, name: &str) -> Result<&'a str, String> {
        match self {
            Field::Text(s) => Ok(s),
            Field::Bytes(b) => {
                std::str::from_utf8(b).map_err(|_| format!("{name} is not valid UTF-8"))
            }
        }
    }
}

/// Trims ASCII and Unicode white space, skipping the work for the usual clean field.
fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(&a), Some(&b)) if a > b' ' && a < 0x80 && b > b' ' && b < 0x80 => s,
        _ => s.trim(),
    }
}

fn check<'a>(f: [Field<'a>; 4], ts_cache: &mut (u64, i64)) -> Result<TourRef<'a>, String> {
    let text = |i: usize, name: &str| f[i].text(name);
    let at = match parse_timestamp_fast(f[0].bytes(), ts_cache) {
        Some(at) => at,
        None => {
            let ts = text(0, "timestamp")?;
            parse_timestamp(ts)
                .ok_or_else(|| format!("timestamp {ts:?} is not YYYY-MM-DD HH:MM:SS"))?
        }
    };
    let user_id = trim(text(1, "user_id")?);
    if user_id.is_empty() {
        return Err("user_id is empty".into());
    }
    let friend_id = trim(text(2, "friend_id")?);
    let friend_name = text(3, "friend_name")?;
    if trim(friend_name).is_empty() {
        return Err("friend_name is empty".into());
    }
    Ok(TourRef {
        at,
        user_id,
        friend_id,
        friend_name,
    })
}

/// Whether a field must be quoted (RFC 4180).
fn needs_quotes(s: &[u8]) -> bool {
    s.iter().any(|&c| matches!(c, b',' | b'"' | b'\n' | b'\r'))
}

/// Appends `s` as one CSV field.
fn put_field(out: &mut Vec<u8>, s: &[u8]) {
    if needs_quotes(s) {
        out.push(b'"');
        for &c in s {
            if c == b'"' {
                out.push(b'"');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(s);
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    let mut n = [0u8; 10];
    let mut i = n.len();
    let mut v = v;
    loop {
        i -= 1;
        n[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&n[i..]);
}

/// Writes bundle rows as RFC 4180 CSV with the contract §8 header. Rows go to an internal
/// buffer that is handed to the writer in large chunks.
pub struct BundleWriter<W: io::Write> {
    out: W,
    buf: Vec<u8>,
    /// The last formatted instant's day and its `YYYY-MM-DD ` prefix.
    day_cache: (i64, [u8; 19]),
}

impl<W: io::Write> BundleWriter<W> {
    const CHUNK: usize = 1 << 16;

    pub fn new(out: W) -> io::Result<Self> {
        let mut w = Self {
            out,
            buf: Vec::with_capacity(Self::CHUNK + 1024),
            day_cache: (i64::MIN, [0u8; 19]),
        };
        w.buf.extend_from_slice(OUTPUT_HEADER.join(",").as_bytes());
        w.buf.push(b'\n');
        Ok(w)
    }

    fn put_time(&mut self, t: UnixSecs) {
        let day = t.div_euclid(86_400);
        if day != self.day_cache.0 {
            let mut b = [0u8; 19];
            write_timestamp(t, &mut b);
            self.day_cache = (day, b);
        }
        let mut b = self.day_cache.1;
        let secs = t.rem_euclid(86_400);
        for (at, v) in [(11, secs / 3600), (14, secs % 3600 / 60), (17, secs % 60)] {
            b[at] = b'0' + (v / 10) as u8;
            b[at + 1] = b'0' + (v % 10) as u8;
        }
        self.buf.extend_from_slice(&b);
    }

    fn row_done(&mut self) -> io::Result<()> {
        self.buf.push(b'\n');
        if self.buf.len() >= Self::CHUNK {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// The four columns before the message, each followed by its comma.
    fn put_head(&mut self, sent: UnixSecs, first: UnixSecs, tours: u32, receiver: &str) {
        self.put_time(sent);
        self.buf.push(b',');
        self.put_time(first);
        self.buf.push(b',');
        put_u32(&mut self.buf, tours);
        self.buf.push(b',');
        put_field(&mut self.buf, receiver.as_bytes());
        self.buf.push(b',');
    }

    /// One row with a ready-made message.
    pub fn write(
        &mut self,
        sent: UnixSecs,
        first: UnixSecs,
        tours: u32,
        receiver: &str,
        message: &str,
    ) -> io::Result<()> {
        self.put_head(sent, first, tours, receiver);
        put_field(&mut self.buf, message.as_bytes());
        self.row_done()
    }

    /// One row, composing the message ([`herald_core::bundle::message`]) without allocating.
    pub fn write_bundle(
        &mut self,
        sent: UnixSecs,
        first: UnixSecs,
        tours: u32,
        receiver: &str,
        first_friend: &str,
    ) -> io::Result<()> {
        self.put_head(sent, first, tours, receiver);
        let quote = needs_quotes(first_friend.as_bytes());
        if quote {
            self.buf.push(b'"');
            for &c in first_friend.as_bytes() {
                if c == b'"' {
                    self.buf.push(b'"');
                }
                self.buf.push(c);
            }
        } else {
            self.buf.extend_from_slice(first_friend.as_bytes());
        }
        match tours {
            0 | 1 => self.buf.extend_from_slice(b" went on a tour"),
            2 => self.buf.extend_from_slice(b" and 1 other went on a tour"),
            n => {
                self.buf.extend_from_slice(b" and ");
                put_u32(&mut self.buf, n - 1);
                self.buf.extend_from_slice(b" others went on a tour");
            }
        }
        if quote {
            self.buf.push(b'"');
        }
        self.row_done()
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> (Vec<(i64, String, String)>, Vec<BadRow>) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        read_tours(
            text.as_bytes(),
            |r| good.push((r.at, r.user_id.to_owned(), r.friend_name.to_owned())),
            |b| bad.push(b),
        )
        .expect("in-memory read");
        (good, bad)
    }

    #[test]
    fn delimiter_search_agrees_with_a_byte_scan() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let alphabet = b"ab,\n\r\x80\xff\x01\x2c\x0b\x0d\x8c";
        for _ in 0..2000 {
            let len = rng.random_range(0..40);
            let buf: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            for from in 0..=buf.len() {
                let want = buf[from..]
                    .iter()
                    .position(|c| matches!(c, b',' | b'\n' | b'\r'))
                    .map_or(buf.len(), |p| from + p);
                assert_eq!(find_delimiter(&buf, from), want, "{buf:?} from {from}");
            }
        }
    }

    #[test]
    fn fast_timestamps_agree_with_the_strict_parser() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut cache = (0, 0);
        for _ in 0..20_000 {
            let t = rng.random_range(0..4_102_444_800i64); // 1970..2100
            let s = format_timestamp(t);
            assert_eq!(
                parse_timestamp_fast(s.as_bytes(), &mut cache),
                Some(t),
                "{s}"
            );
            // The same date again comes from the cache.
            let again = format_timestamp(t - t.rem_euclid(86_400) + 3599);
            assert_eq!(
                parse_timestamp_fast(again.as_bytes(), &mut cache),
                parse_timestamp(&again)
            );
        }
        for bad in [
            "2017-02-29 00:00:00",
            "2017-08-01 24:00:00",
            "2017-13-01 00:00:00",
            "2017-08-00 00:00:00",
            "2017-08-01 00:60:00",
            "2017-08-01T00:00:00",
            " 2017-08-01 00:00:0",
        ] {
            assert_eq!(
                parse_timestamp_fast(bad.as_bytes(), &mut cache),
                None,
                "{bad}"
            );
        }
        // What the fast path refuses the strict parser may still take.
        let (mut good, mut bad) = (Vec::new(), 0);
        read_tours(
            " 2017-08-01T00:00:01 ,U,F,N\n".as_bytes(),
            |r| good.push(r.at),
            |_| bad += 1,
        )
        .expect("read");
        assert_eq!((good, bad), (vec![1_501_545_601], 0));
    }

    #[test]
    fn quoted_fields_span_lines_and_keep_line_numbers() {
        let text = "\u{feff}timestamp,user_id,friend_id,friend_name\r\n\
                    2017-08-01 00:00:01,U1,F1,\"Two\nlines, \"\"q\"\"\"\r\n\
                    \r\n\
                    2017-08-01 00:00:02,U2,F2,\"A\"fter\n\
                    bad,U3,F3,X\n\
                    2017-08-01 00:00:03,\"U4\",F4,\"\"\n\
                    2017-08-01 00:00:04,U5,F5,Last";
        let (good, bad) = read(text);
        assert_eq!(
            good,
            vec![
                (
                    1_501_545_601,
                    "U1".to_owned(),
                    "Two\nlines, \"q\"".to_owned()
                ),
                (1_501_545_602, "U2".to_owned(), "After".to_owned()),
                (1_501_545_604, "U5".to_owned(), "Last".to_owned()),
            ]
        );
        let lines: Vec<u64> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![6, 7], "{bad:?}");
        assert!(bad[1].reason.contains("friend_name is empty"), "{bad:?}");
    }

    /// Hands out its data a few bytes at a time, as a pipe may.
    struct Trickle<'a> {
        data: &'a [u8],
        sizes: std::iter::Cycle<std::slice::Iter<'a, usize>>,
    }

    impl io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let k = (*self.sizes.next().unwrap_or(&1))
                .min(out.len())
                .min(self.data.len());
            out[..k].copy_from_slice(&self.data[..k]);
            self.data = &self.data[k..];
            Ok(k)
        }
    }

    #[test]
    fn chunked_reading_matches_reading_at_once() {
        let text = "\u{feff}timestamp,user_id,friend_id,friend_name\r\n\
                    2017-08-01 00:00:01,U1,F1,\"Two\r\nlines, \"\"q\"\"\"\r\n\
                    \r\n\r\
                    2017-08-01 00:00:02,Ü2,F2,Σωτήριος 三浦\r\
                    oops,U3\n\
                    2017-08-01 00:00:03,U4,F4,\"x\"\"\"\r\n\
                    2017-08-01 00:00:04,U5,F5,\"unterminated\nend";
        let whole = {
            let (mut g, mut b) = (Vec::new(), Vec::new());
            parse_tours(
                text.as_bytes(),
                |r| g.push((r.at, r.user_id.to_owned(), r.friend_name.to_owned())),
                |x| b.push(x),
            );
            (g, b)
        };
        assert_eq!(whole.0.len(), 4, "{whole:?}");
        assert_eq!(whole.1.len(), 1, "{whole:?}");
        for sizes in [vec![1], vec![2], vec![3, 1, 7], vec![5, 11, 2], vec![64]] {
            let (mut g, mut b) = (Vec::new(), Vec::new());
            read_tours(
                Trickle {
                    data: text.as_bytes(),
                    sizes: sizes.iter().cycle(),
                },
                |r| g.push((r.at, r.user_id.to_owned(), r.friend_name.to_owned())),
                |x| b.push(x),
            )
            .expect("read");
            assert_eq!((g, b), whole, "pieces of {sizes:?}");
        }
    }

    #[test]
    fn invalid_utf8_skips_only_its_row() {
        let mut text = b"2017-08-01 00:00:01,U1,F1,Ok\n2017-08-01 00:00:02,U2,F2,".to_vec();
        text.extend_from_slice(b"\xff\xfe\n2017-08-01 00:00:03,U3,F3,Fine\n");
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        read_tours(text.as_slice(), |r| good.push(r.at), |b| bad.push(b)).expect("read");
        assert_eq!(good.len(), 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 2);
        assert!(bad[0].reason.contains("UTF-8"));
    }

    #[test]
    fn write_bundle_composes_the_same_message() {
        let mut a = BundleWriter::new(Vec::new()).expect("header");
        let mut b = BundleWriter::new(Vec::new()).expect("header");
        for (i, name) in ["Matthew", "Doe, \"JD\"", "三浦", "Line\nbreak"]
            .iter()
            .enumerate()
        {
            for tours in [1, 2, 3, 17] {
                let t = 1_501_545_600 + i as i64 * 86_399;
                a.write(
                    t,
                    t - 5,
                    tours,
                    "U,1",
                    &herald_core::bundle::message(name, tours),
                )
                .expect("row");
                b.write_bundle(t, t - 5, tours, "U,1", name).expect("row");
            }
        }
        assert_eq!(a.finish().expect("a"), b.finish().expect("b"));
    }

    #[test]
    fn timestamps_round_trip() {
        for s in [
            "2017-08-01 00:06:47",
            "2000-02-29 23:59:59",
            "1970-01-01 00:00:00",
            "2038-01-19 03:14:08",
        ] {
            let t = parse_timestamp(s).expect(s);
            assert_eq!(format_timestamp(t), s);
        }
        assert_eq!(parse_timestamp("2017-08-01 00:00:00"), Some(1_501_545_600));
        for bad in [
            "2017-02-29 00:00:00",
            "2017-08-01",
            "2017-08-01 24:00:00",
            "2017-13-01 00:00:00",
            "x017-08-01 00:00:00",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_is_optional_and_quoting_is_rfc4180() {
        let body =
            "2017-08-01 00:06:47,U1,F1,Geir\n2017-08-01 00:07:00,U2,F2,\"Doe, \"\"JD\"\" 小\"\n";
        let (a, bad_a) = read(body);
        let (b, bad_b) = read(&format!("timestamp,user_id,friend_id,friend_name\n{body}"));
        assert!(bad_a.is_empty() && bad_b.is_empty());
        assert_eq!(a, b);
        assert_eq!(a[1].2, "Doe, \"JD\" 小");
    }

    #[test]
    fn bad_rows_are_reported_with_line_numbers_and_skipped() {
        let text = "timestamp,user_id,friend_id,friend_name\n\
                    2017-08-01 00:06:47,U1,F1,Geir\n\
                    yesterday,U1,F1,Geir\n\
                    2017-08-01 00:06:47,U1\n\
                    2017-08-01 00:06:47,,F1,Geir\n\
                    2017-08-01 00:08:00,U2,F2,Ok\n";
        let (good, bad) = read(text);
        assert_eq!(good.len(), 2);
        let lines: Vec<u64> = bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, vec![3, 4, 5], "{bad:?}");
        assert!(bad[0].reason.contains("timestamp"));
        assert!(bad[1].reason.contains("4 fields"));
    }

    #[test]
    fn writer_quotes_names_with_commas_and_quotes() {
        let mut w = BundleWriter::new(Vec::new()).expect("header");
        w.write(
            1_501_545_600,
            1_501_545_600,
            2,
            "U1",
            "Doe, \"JD\" and 1 other went on a tour",
        )
        .expect("row");
        let out = String::from_utf8(w.finish().expect("flush")).expect("utf8");
        assert_eq!(
            out,
            "notification_sent,timestamp_first_tour,tours,receiver_id,message\n\
             2017-08-01 00:00:00,2017-08-01 00:00:00,2,U1,\"Doe, \"\"JD\"\" and 1 other went on a tour\"\n"
        );
    }
}
