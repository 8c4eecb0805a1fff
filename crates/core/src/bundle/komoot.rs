//! The komoot challenge CSV format: `timestamp,user_id,friend_id,friend_name` in,
//! `notification_sent,timestamp_first_tour,tours,receiver_id,message` out. RFC 4180
//! quoting both ways (names hold commas, quotes, any UTF-8), UTC times written
//! `YYYY-MM-DD HH:MM:SS`. The header line is optional on input.
//!
//! Reading works on any `io::Read` and borrows each row's fields instead of allocating,
//! because the replay is meant to run a million rows a second.

use super::UnixSecs;
use std::io;

/// The output header (SPEC 8).
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

/// Reads every row of `input`, calling `on_row` for good ones and `on_bad` for rows
/// that are skipped. A first line starting with `timestamp` is taken as the header.
/// I/O errors stop the read; malformed CSV (a stray quote, bad UTF-8, a wrong field
/// count) only skips its row.
pub fn read_tours<R: io::Read>(
    input: R,
    mut on_row: impl FnMut(TourRef<'_>),
    mut on_bad: impl FnMut(BadRow),
) -> io::Result<()> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(1 << 16)
        .from_reader(input);
    let mut rec = csv::ByteRecord::new();
    let mut first = true;
    loop {
        let line = rdr.position().line();
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => match e.kind() {
                csv::ErrorKind::Io(_) => {
                    return Err(match e.into_kind() {
                        csv::ErrorKind::Io(io) => io,
                        _ => io::Error::other("read error"),
                    })
                }
                _ => {
                    on_bad(BadRow {
                        line,
                        reason: format!("malformed CSV: {e}"),
                    });
                    first = false;
                    continue;
                }
            },
        }
        let line = rec.position().map_or(line, |p| p.line());
        let is_first = std::mem::replace(&mut first, false);
        if is_first
            && rec
                .get(0)
                .is_some_and(|f| f.trim_ascii().eq_ignore_ascii_case(b"timestamp"))
        {
            continue;
        }
        if rec.len() == 1 && rec.get(0).is_some_and(|f| f.trim_ascii().is_empty()) {
            continue; // a blank line is not a row
        }
        match check(&rec) {
            Ok(row) => on_row(row),
            Err(reason) => on_bad(BadRow { line, reason }),
        }
    }
}

fn check(rec: &csv::ByteRecord) -> Result<TourRef<'_>, String> {
    if rec.len() != 4 {
        return Err(format!(
            "expected 4 fields (timestamp,user_id,friend_id,friend_name), found {}",
            rec.len()
        ));
    }
    let field = |i: usize, name: &str| -> Result<&str, String> {
        let raw = rec.get(i).unwrap_or_default();
        std::str::from_utf8(raw).map_err(|_| format!("{name} is not valid UTF-8"))
    };
    let ts = field(0, "timestamp")?;
    let at = parse_timestamp(ts)
        .ok_or_else(|| format!("timestamp {ts:?} is not YYYY-MM-DD HH:MM:SS"))?;
    let user_id = field(1, "user_id")?.trim();
    if user_id.is_empty() {
        return Err("user_id is empty".into());
    }
    let friend_id = field(2, "friend_id")?.trim();
    let friend_name = field(3, "friend_name")?;
    if friend_name.trim().is_empty() {
        return Err("friend_name is empty".into());
    }
    Ok(TourRef {
        at,
        user_id,
        friend_id,
        friend_name,
    })
}

/// Writes bundle rows as RFC 4180 CSV with the SPEC header.
pub struct BundleWriter<W: io::Write> {
    w: csv::Writer<W>,
}

impl<W: io::Write> BundleWriter<W> {
    pub fn new(out: W) -> io::Result<Self> {
        let mut w = csv::WriterBuilder::new()
            .buffer_capacity(1 << 16)
            .from_writer(out);
        w.write_record(OUTPUT_HEADER)?;
        Ok(Self { w })
    }

    pub fn write(
        &mut self,
        sent: UnixSecs,
        first: UnixSecs,
        tours: u32,
        receiver: &str,
        message: &str,
    ) -> io::Result<()> {
        let (mut a, mut b) = ([0u8; 19], [0u8; 19]);
        let mut n = [0u8; 10];
        let digits = {
            let mut v = tours;
            let mut i = n.len();
            loop {
                i -= 1;
                n[i] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            &n[i..]
        };
        self.w.write_record([
            write_timestamp(sent, &mut a),
            write_timestamp(first, &mut b),
            digits,
            receiver.as_bytes(),
            message.as_bytes(),
        ])?;
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.w.flush()?;
        self.w
            .into_inner()
            .map_err(|e| io::Error::other(e.to_string()))
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
