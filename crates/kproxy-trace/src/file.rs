//! Reading a ruleset file: a large file is read in pieces, one per core, each straight
//! into the buffer its rules will share, so the file is copied once and the threads read
//! and parse at the same time.

use crate::parser::{
    count_newlines, parse_lines, piece_target, prepare, thread_count, Applier, Chunk, Family,
    ParseError, ParseErrorKind,
};
use crate::ruleset::Ruleset;
use crate::text::TextSource;
use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// A ruleset file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading the file failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The text is not a valid ruleset.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// How far past a cut point to look for the end of its line at a time.
const LINE_END_WINDOW: usize = 64 << 10;

/// Parses the ruleset file at `path` as [`crate::parser`] parses a text.
pub(crate) fn parse_file(path: &Path, family: Family) -> Result<(Ruleset, Ruleset), ReadError> {
    let mut file = File::open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        // A pipe or a device (`--rules <(iptables-save)`) has no size to cut by.
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        return Ok(parse_lines(&utf8_text(bytes, 0)?, family)?);
    }
    let len = usize::try_from(metadata.len()).map_err(io::Error::other)?;
    let pieces = cut_at_line_ends(&file, len, thread_count(len))?;
    let mut buffers: Vec<Arc<String>> = pieces.iter().map(|_| Arc::default()).collect();
    let mut applier = Applier::new(family);
    std::thread::scope(|scope| -> Result<(), ReadError> {
        let mut slots = buffers.iter_mut();
        let mut ranges = pieces.into_iter();
        let (Some(first_slot), Some(first_range)) = (slots.next(), ranges.next()) else {
            return Ok(());
        };
        // Each piece's line numbers start after the lines of the pieces before it: every
        // reader passes on its first line number plus its own line count.
        let (first_count, mut previous_count) = sync_channel(1);
        let mut readers = Vec::new();
        for (range, slot) in ranges.zip(slots) {
            let (count, next_count) = sync_channel(1);
            let before = std::mem::replace(&mut previous_count, next_count);
            let file = &file;
            let reader = std::thread::Builder::new().spawn_scoped(scope, move || {
                read_piece(file, range, slot, Some(before), count)
            })?;
            readers.push(reader);
        }
        applier.chunk(read_piece(
            &file,
            first_range,
            first_slot,
            None,
            first_count,
        )?)?;
        for reader in readers {
            let chunk = reader
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            applier.chunk(chunk)?;
        }
        Ok(())
    })?;
    Ok(applier.finish()?)
}

/// Cuts a file of `len` bytes after newlines into `pieces` ranges of about equal size
/// (the first a little smaller), reading only around each cut.
fn cut_at_line_ends(file: &File, len: usize, pieces: usize) -> io::Result<Vec<Range<usize>>> {
    let mut ranges = Vec::with_capacity(pieces);
    let mut start = 0;
    let mut window = vec![0u8; LINE_END_WINDOW];
    for left in (2..=pieces).rev() {
        let mut end = start + piece_target(len - start, left, pieces);
        loop {
            let want = LINE_END_WINDOW.min(len - end);
            let got = &mut window[..want];
            file.read_exact_at(got, end as u64)?;
            match got.iter().position(|&b| b == b'\n') {
                Some(at) => {
                    end += at + 1;
                    break;
                }
                None if end + want >= len => {
                    end = len;
                    break;
                }
                None => end += want,
            }
        }
        ranges.push(start..end);
        start = end;
    }
    ranges.push(start..len);
    Ok(ranges)
}

/// Reads the bytes in `range` into `slot` and prepares them as one chunk. The number of
/// lines before the piece comes from `before` (none: the piece starts the file), and the
/// number before the next piece goes to `after`.
fn read_piece<'a>(
    file: &File,
    range: Range<usize>,
    slot: &'a mut Arc<String>,
    before: Option<Receiver<usize>>,
    after: SyncSender<usize>,
) -> Result<Chunk<'a>, ReadError> {
    let mut bytes = vec![0u8; range.len()];
    advise_huge_pages(&mut bytes);
    file.read_exact_at(&mut bytes, range.start as u64)?;
    let lines = count_newlines(&bytes);
    let first_line = match before {
        Some(before) => before
            .recv()
            .map_err(|_| io::Error::other("an earlier piece of the file could not be read"))?,
        None => 0,
    };
    // The next piece's reader may have stopped already; it reports its own error.
    let _ = after.send(first_line + lines);
    drop(after);
    *slot = Arc::new(utf8_text(bytes, first_line)?);
    let slot: &'a Arc<String> = slot;
    Ok(prepare(
        slot.as_str(),
        TextSource::new(Arc::clone(slot)),
        first_line,
    ))
}

/// `bytes` as text, or an error naming the line (counted after `first_line`) where they
/// stop being UTF-8.
fn utf8_text(bytes: Vec<u8>, first_line: usize) -> Result<String, ParseError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        ParseError {
            line: first_line + count_newlines(valid) + 1,
            kind: ParseErrorKind::NotUtf8,
        }
    })
}

/// Asks the kernel to back the whole 2 MiB pages inside `buffer` with transparent huge
/// pages before it is first written: a large ruleset's text otherwise costs one page fault
/// per 4 KiB. Only advice: where huge pages are off or unavailable nothing changes.
fn advise_huge_pages(buffer: &mut [u8]) {
    const HUGE_PAGE: usize = 2 << 20;
    let start = buffer.as_mut_ptr() as usize;
    let first = start.next_multiple_of(HUGE_PAGE);
    let last = (start + buffer.len()) / HUGE_PAGE * HUGE_PAGE;
    if last > first {
        // SAFETY: the range lies inside `buffer`, which is borrowed mutably here, and
        // MADV_HUGEPAGE changes neither the contents nor the validity of the memory.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::tests::big_nat;
    use crate::parser::IP6TABLES_SEPARATOR;
    use crate::DualStackRuleset;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(bytes).expect("write");
        file
    }

    #[test]
    fn a_large_file_reads_as_its_text_parses() {
        let ipv4 = big_nat(12_000);
        let text = format!("{ipv4}{IP6TABLES_SEPARATOR}\n{}", big_nat(3));
        assert!(text.len() > 1 << 20, "large enough to be read in pieces");
        let file = file_with(text.as_bytes());
        let read = DualStackRuleset::read_file(file.path()).expect("read");
        assert_eq!(read, DualStackRuleset::parse(&text).expect("parse"));
        assert_eq!(read.ipv4.rule_count(), 12_000);
        assert_eq!(read.ipv6.rule_count(), 3);
    }

    #[test]
    fn errors_in_later_pieces_keep_their_line_numbers() {
        let text = big_nat(20_000);
        let mut lines: Vec<&str> = text.lines().collect();
        lines[18_000] = "-A NOPE -j ACCEPT";
        let file = file_with(lines.join("\n").as_bytes());
        match DualStackRuleset::read_file(file.path()) {
            Err(ReadError::Parse(e)) => assert_eq!(
                (e.line, e.kind),
                (18_001, ParseErrorKind::UndeclaredChain("NOPE".into()))
            ),
            other => panic!("{other:?}"),
        }
        let mut bytes = text.into_bytes();
        let line_start = bytes
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .nth(16_999)
            .map(|(at, _)| at + 1)
            .expect("line 17,001");
        bytes[line_start + 4] = 0xff;
        let file = file_with(&bytes);
        match DualStackRuleset::read_file(file.path()) {
            Err(ReadError::Parse(e)) => {
                assert_eq!((e.line, e.kind), (17_001, ParseErrorKind::NotUtf8))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pieces_end_at_line_ends_even_after_long_lines() {
        let long = "x".repeat(3 * LINE_END_WINDOW);
        let text = format!("{long}\n{long}\nshort\n{long}\n");
        let file = file_with(text.as_bytes());
        let ranges = cut_at_line_ends(file.as_file(), text.len(), 3).expect("cut");
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert_eq!(ranges.last().map(|r| r.end), Some(text.len()));
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        for range in &ranges[..ranges.len() - 1] {
            assert!(range.is_empty() || text.as_bytes()[range.end - 1] == b'\n');
        }
    }

    #[test]
    fn a_pipe_is_read_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = dir.path().join("rules");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let text = big_nat(10);
        let writer = {
            let (fifo, text) = (fifo.clone(), text.clone());
            std::thread::spawn(move || std::fs::write(fifo, text))
        };
        let read = DualStackRuleset::read_file(&fifo).expect("read");
        writer.join().expect("writer").expect("write");
        assert_eq!(read, DualStackRuleset::parse(&text).expect("parse"));
        assert_eq!(read.ipv4.rule_count(), 10);
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let missing = Path::new("/nonexistent/kproxy-trace-rules");
        assert!(matches!(
            DualStackRuleset::read_file(missing),
            Err(ReadError::Io(_))
        ));
    }
}
