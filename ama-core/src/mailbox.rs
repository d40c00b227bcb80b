//! Finding messages on disk for import.
//!
//! This module turns the paths a user gives to `ama import` (or Python's
//! `tenant.import_path`) into a lazy stream of raw messages ([`walk`] →
//! [`Walk`], an iterator of [`Item`]s). Memory stays bounded: at most one
//! message is held at a time (never larger than
//! [`WalkOptions::max_message_size`], plus a short line of look-ahead),
//! together with the file names of the directories currently being walked.
//! A whole directory tree or a whole mbox file is never loaded.
//!
//! The module never parses the mail itself (the engine does). It keeps the
//! bytes of each message exactly as they are on disk: for `.eml` and Maildir
//! files that is the whole file, byte-exact, including a leading mbox
//! `From ` line if the file has one. For mbox files it is the message
//! between two `From ` lines, with mboxrd `>From ` quoting undone by one
//! level and the blank separator line before the next `From ` line removed.
//!
//! How a path is read:
//!
//! * A path that does not exist gives one [`MailboxError::NotFound`] item.
//! * A directory with a `cur` or `new` subdirectory is a **Maildir**: the
//!   files of `cur/` and then of `new/` (each sorted by name, skipping names
//!   starting with `.`; `tmp/` is ignored), then the Maildir++ subfolders
//!   (subdirectories named `.Something` that contain `cur` or `new`), sorted.
//!   Maildir files are always single messages.
//! * Any other directory is walked recursively, entries sorted by file name,
//!   skipping names starting with `.`. Symbolic links are followed to files
//!   but not to directories (so link loops cannot occur); a path given
//!   directly by the user is always followed.
//! * A file whose name ends in `.mbox` or `.mbx` (any case), or which does
//!   not end in `.eml` and starts with `From `, is an **mbox**; its messages
//!   have the origins `FILE#1`, `FILE#2`, …
//! * Any other file is one message (the whole file).
//!
//! Errors are per item: a file that cannot be read gives one error item and
//! the walk goes on with the next one.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::iter::FusedIterator;
use std::path::{Path, PathBuf};

/// Default for [`WalkOptions::max_message_size`]: 64 MiB.
const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 * 1024 * 1024;

/// How many bytes of a line are kept at least, even while skipping an
/// oversize mbox message, to recognise `From ` and `>From ` lines.
const LINE_PEEK: usize = 64;

/// Buffer size for reading mbox files.
const MBOX_BUFFER: usize = 64 * 1024;

/// One message found under the given paths, or the reason it could not be read.
#[derive(Debug)]
pub struct Item {
    /// Where it came from: the file path (as given/joined, lossy UTF-8
    /// display), or `FILE#N` for the N-th (1-based) message of an mbox file.
    pub origin: String,
    /// The raw message bytes, or why they could not be read.
    pub raw: Result<Vec<u8>, MailboxError>,
}

/// Options for walking.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Messages larger than this are reported as [`MailboxError::TooLarge`]
    /// without being read into memory (for plain files the size on disk is
    /// checked first; for mbox files accumulation stops once over the limit
    /// and the reader skips to the next `From ` line).
    pub max_message_size: u64,
}

impl Default for WalkOptions {
    /// A limit of 64 MiB per message.
    fn default() -> Self {
        Self {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// Errors reading a source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// The file or directory could not be opened, listed or read.
    #[error("cannot read {path}")]
    Io {
        /// The path involved (lossy UTF-8 display).
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The message is larger than [`WalkOptions::max_message_size`].
    #[error("message is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The size of the message in bytes (for an mbox message being
        /// skipped, as counted up to the next `From ` line).
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// A path given to [`walk`] does not exist.
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The path as given (lossy UTF-8 display).
        path: String,
    },
}

/// Walk the given paths lazily, in a deterministic order.
///
/// The paths are visited in the order given; directories are walked in
/// file-name order (see the [module documentation](self) for the rules).
/// Nothing is read until the returned iterator is advanced.
pub fn walk(paths: &[PathBuf], options: &WalkOptions) -> Walk {
    let stack = paths
        .iter()
        .rev()
        .map(|path| Task::Visit {
            path: path.clone(),
            mode: Mode::Given,
        })
        .collect();
    Walk {
        stack,
        limit: options.max_message_size,
    }
}

/// Iterator over [`Item`]s, created by [`walk`].
///
/// It is `Send`, so it can be driven from a worker thread.
#[derive(Debug)]
pub struct Walk {
    /// Work still to do; the last task is done next.
    stack: Vec<Task>,
    /// [`WalkOptions::max_message_size`].
    limit: u64,
}

/// How a path met during the walk is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Given by the user: must exist; symbolic links are followed.
    Given,
    /// An entry of a plain directory: files are classified, directories
    /// recursed into, links to directories skipped.
    Entry,
    /// A file in a Maildir `cur/` or `new/`: always a single message.
    MaildirFile,
}

/// What a directory listing is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    /// A plain directory: every entry not starting with `.`.
    Tree,
    /// A Maildir `cur/` or `new/`: every file not starting with `.`; the
    /// directory may be missing.
    MaildirMessages,
    /// A Maildir root: its Maildir++ subfolders.
    MaildirSubfolders,
}

/// A unit of pending work.
#[derive(Debug)]
enum Task {
    /// Look at a path and decide what it is.
    Visit { path: PathBuf, mode: Mode },
    /// List a directory.
    List { dir: PathBuf, listing: Listing },
    /// Continue reading an mbox file.
    Mbox(Box<MboxReader>),
    /// Hand out an item produced earlier.
    Emit(Item),
}

impl Iterator for Walk {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        while let Some(task) = self.stack.pop() {
            let item = match task {
                Task::Visit { path, mode } => self.visit(path, mode),
                Task::List { dir, listing } => self.list(&dir, listing),
                Task::Mbox(mut reader) => {
                    let item = reader.next_item();
                    if item.is_some() {
                        self.stack.push(Task::Mbox(reader));
                    }
                    item
                }
                Task::Emit(item) => Some(item),
            };
            if item.is_some() {
                return item;
            }
        }
        None
    }
}

impl FusedIterator for Walk {}

impl Walk {
    /// Classify `path`: returns an item right away, or queues more work.
    fn visit(&mut self, path: PathBuf, mode: Mode) -> Option<Item> {
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if mode == Mode::Given && e.kind() == io::ErrorKind::NotFound => {
                let origin = display(&path);
                return Some(Item {
                    raw: Err(MailboxError::NotFound {
                        path: origin.clone(),
                    }),
                    origin,
                });
            }
            Err(e) => return Some(io_item(&path, e)),
        };
        let file_type = meta.file_type();
        let (is_file, is_dir) = if file_type.is_symlink() {
            match fs::metadata(&path) {
                // Links to directories are only followed when given directly.
                Ok(target) => (target.is_file(), mode == Mode::Given && target.is_dir()),
                Err(e) => return Some(io_item(&path, e)),
            }
        } else {
            (file_type.is_file(), file_type.is_dir())
        };

        if is_file {
            self.open_file(path, mode == Mode::MaildirFile)
        } else if is_dir && mode != Mode::MaildirFile {
            self.queue_directory(path);
            None
        } else if mode == Mode::Given {
            Some(io_item(
                &path,
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not a regular file or directory",
                ),
            ))
        } else {
            // Sockets, FIFOs, devices, links to directories, directories in
            // a Maildir `cur/`: not mail.
            None
        }
    }

    /// Queue the walk of a directory, as a Maildir or as a plain tree.
    fn queue_directory(&mut self, dir: PathBuf) {
        if is_maildir(&dir) {
            // Pushed in reverse: `cur/` is done first, subfolders last.
            self.stack.push(Task::List {
                dir: dir.clone(),
                listing: Listing::MaildirSubfolders,
            });
            self.stack.push(Task::List {
                dir: dir.join("new"),
                listing: Listing::MaildirMessages,
            });
            self.stack.push(Task::List {
                dir: dir.join("cur"),
                listing: Listing::MaildirMessages,
            });
        } else {
            self.stack.push(Task::List {
                dir,
                listing: Listing::Tree,
            });
        }
    }

    /// List a directory and queue its entries in sorted order.
    fn list(&mut self, dir: &Path, listing: Listing) -> Option<Item> {
        let reader = match fs::read_dir(dir) {
            Ok(reader) => reader,
            Err(e)
                if listing == Listing::MaildirMessages && e.kind() == io::ErrorKind::NotFound =>
            {
                return None;
            }
            Err(e) => return Some(io_item(dir, e)),
        };
        let mut names: Vec<OsString> = Vec::new();
        let mut errors: Vec<Item> = Vec::new();
        for entry in reader {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    errors.push(io_item(dir, e));
                    continue;
                }
            };
            let name = entry.file_name();
            if name.as_encoded_bytes().first() == Some(&b'.') {
                if listing == Listing::MaildirSubfolders
                    && entry.file_type().is_ok_and(|t| t.is_dir())
                    && is_maildir(&entry.path())
                {
                    names.push(name);
                }
                continue;
            }
            if listing != Listing::MaildirSubfolders {
                names.push(name);
            }
        }
        names.sort_unstable();

        for name in names.into_iter().rev() {
            let path = dir.join(name);
            match listing {
                Listing::Tree => self.stack.push(Task::Visit {
                    path,
                    mode: Mode::Entry,
                }),
                Listing::MaildirMessages => self.stack.push(Task::Visit {
                    path,
                    mode: Mode::MaildirFile,
                }),
                Listing::MaildirSubfolders => self.queue_directory(path),
            }
        }
        // Errors while listing come first.
        self.stack.extend(errors.into_iter().rev().map(Task::Emit));
        None
    }

    /// Open a regular file: read it as one message or queue it as an mbox.
    fn open_file(&mut self, path: PathBuf, single: bool) -> Option<Item> {
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) => return Some(io_item(&path, e)),
        };
        let mbox = !single
            && match mbox_by_name(&path) {
                Some(by_name) => by_name,
                None => match starts_with_from(&mut file) {
                    Ok(from) => from,
                    Err(e) => return Some(io_item(&path, e)),
                },
            };
        if mbox {
            self.stack.push(Task::Mbox(Box::new(MboxReader::new(
                display(&path),
                file,
                self.limit,
            ))));
            None
        } else {
            Some(Item {
                origin: display(&path),
                raw: read_whole(&path, file, self.limit),
            })
        }
    }
}

/// Whether `dir` has a `cur` or `new` subdirectory.
fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

/// Decide from the name alone: `Some(true)` for `.mbox`/`.mbx`,
/// `Some(false)` for `.eml`, `None` when the contents must decide.
fn mbox_by_name(path: &Path) -> Option<bool> {
    let ext = path.extension()?;
    if ext.eq_ignore_ascii_case("mbox") || ext.eq_ignore_ascii_case("mbx") {
        Some(true)
    } else if ext.eq_ignore_ascii_case("eml") {
        Some(false)
    } else {
        None
    }
}

/// Whether the file starts with `From `; leaves the file at offset 0.
fn starts_with_from(file: &mut File) -> io::Result<bool> {
    let mut head = Vec::with_capacity(5);
    file.take(5).read_to_end(&mut head)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(head == b"From ")
}

/// Read a whole file as one message, unless it is over `limit`.
fn read_whole(path: &Path, mut file: File, limit: u64) -> Result<Vec<u8>, MailboxError> {
    let io_error = |source| MailboxError::Io {
        path: display(path),
        source,
    };
    let len = file.metadata().map_err(io_error)?.len();
    if len > limit {
        return Err(MailboxError::TooLarge { size: len, limit });
    }
    let mut raw = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // Read at most one byte over the limit, in case the file grew meanwhile.
    (&mut file)
        .take(limit.saturating_add(1))
        .read_to_end(&mut raw)
        .map_err(io_error)?;
    let size = raw.len() as u64;
    if size > limit {
        return Err(MailboxError::TooLarge {
            size: size.max(len),
            limit,
        });
    }
    Ok(raw)
}

/// Reads the messages of one mbox file, one at a time.
#[derive(Debug)]
struct MboxReader {
    /// The file's path for origins and errors.
    path: String,
    reader: BufReader<File>,
    limit: u64,
    /// Messages handed out so far (including errors).
    count: u64,
    /// A `From ` line has been seen, so what follows is a message.
    started: bool,
    /// End of file or an I/O error has been reached.
    done: bool,
}

impl MboxReader {
    fn new(path: String, file: File, limit: u64) -> Self {
        Self {
            path,
            reader: BufReader::with_capacity(MBOX_BUFFER, file),
            limit,
            count: 0,
            started: false,
            done: false,
        }
    }

    /// The next message, or `None` at the end of the file.
    ///
    /// Text before the first `From ` line is returned as a message of its
    /// own if it is not blank (so a `.mbox` file without `From ` lines is
    /// not lost).
    fn next_item(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        // Room for the message plus the blank separator line (`\r\n`).
        let allowance = self.limit.saturating_add(2);
        let mut contents: Vec<u8> = Vec::new();
        // Bytes of the message so far, after unquoting, even when not kept.
        let mut size: u64 = 0;
        let mut over = false;
        // Every byte so far (also those skipped past the limit) is ASCII
        // whitespace: a blank preamble is dropped however long it is.
        let mut blank = true;
        // `blank` as it was before the current line.
        let mut blank_before = true;
        loop {
            let start = contents.len();
            let cap = if over {
                LINE_PEEK
            } else {
                let room = allowance.saturating_sub(size).saturating_add(1);
                usize::try_from(room).unwrap_or(usize::MAX).max(LINE_PEEK)
            };
            let line_len = match read_line(&mut self.reader, &mut contents, cap) {
                Ok((len, line_blank)) => {
                    blank &= line_blank;
                    len
                }
                Err(source) => {
                    self.done = true;
                    self.count += 1;
                    return Some(Item {
                        origin: self.origin(),
                        raw: Err(MailboxError::Io {
                            path: self.path.clone(),
                            source,
                        }),
                    });
                }
            };
            if line_len == 0 {
                self.done = true;
                if !self.started && blank {
                    // Empty file, or only blank lines.
                    return None;
                }
                break;
            }
            let line = &contents[start..];
            if line.starts_with(b"From ") {
                contents.truncate(start);
                if self.started {
                    break;
                }
                self.started = true;
                if blank_before {
                    // Nothing but blank lines before the first `From ` line
                    // (however many: also past the size limit).
                    contents.clear();
                    size = 0;
                    over = false;
                    blank = true;
                    continue;
                }
                break;
            }
            blank_before = blank;
            let mut line_len = line_len;
            if is_quoted_from(line) {
                contents.remove(start);
                line_len -= 1;
            }
            size = size.saturating_add(line_len);
            if over {
                contents.clear();
            } else if size > allowance {
                over = true;
                contents = Vec::new();
            }
        }

        self.count += 1;
        let raw = if over {
            Err(MailboxError::TooLarge {
                size,
                limit: self.limit,
            })
        } else {
            strip_separator(&mut contents);
            let size = contents.len() as u64;
            if size > self.limit {
                Err(MailboxError::TooLarge {
                    size,
                    limit: self.limit,
                })
            } else {
                Ok(contents)
            }
        };
        Some(Item {
            origin: self.origin(),
            raw,
        })
    }

    /// `PATH#N` for the current message.
    fn origin(&self) -> String {
        format!("{}#{}", self.path, self.count)
    }
}

/// Read one line (through `\n`, or to end of file), appending at most `cap`
/// bytes of it to `out` and skipping the rest. Returns the full length of the
/// line (0 at end of file) and whether all of it, skipped bytes included, is
/// ASCII whitespace.
fn read_line(reader: &mut impl BufRead, out: &mut Vec<u8>, cap: usize) -> io::Result<(u64, bool)> {
    let mut total: u64 = 0;
    let mut stored: usize = 0;
    let mut blank = true;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok((total, blank));
        }
        let (len, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        blank &= buf[..len].iter().all(u8::is_ascii_whitespace);
        let take = cap.saturating_sub(stored).min(len);
        out.extend_from_slice(&buf[..take]);
        stored += take;
        total += len as u64;
        reader.consume(len);
        if end {
            return Ok((total, blank));
        }
    }
}

/// Whether a line matches `^>+From ` (mboxrd quoting).
fn is_quoted_from(line: &[u8]) -> bool {
    let quotes = line.iter().take_while(|&&b| b == b'>').count();
    quotes > 0 && line[quotes..].starts_with(b"From ")
}

/// Remove the blank line that separates an mbox message from the next one:
/// exactly one trailing `\n` (or `\r\n`) when the message ends with an empty
/// line.
fn strip_separator(contents: &mut Vec<u8>) {
    if contents.ends_with(b"\r\n\r\n") {
        contents.truncate(contents.len() - 2);
    } else if contents.ends_with(b"\n\n") {
        contents.truncate(contents.len() - 1);
    }
}

/// A path for display (lossy UTF-8).
fn display(path: &Path) -> String {
    path.display().to_string()
}

/// An error item for `path`.
fn io_item(path: &Path, source: io::Error) -> Item {
    let origin = display(path);
    Item {
        raw: Err(MailboxError::Io {
            path: origin.clone(),
            source,
        }),
        origin,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(paths: &[PathBuf], options: &WalkOptions) -> Vec<Item> {
        walk(paths, options).collect()
    }

    fn ok(item: &Item) -> &[u8] {
        match &item.raw {
            Ok(raw) => raw,
            Err(e) => panic!("{}: unexpected error {e}", item.origin),
        }
    }

    fn origins(items: &[Item], base: &Path) -> Vec<String> {
        let prefix = format!("{}/", base.display());
        items
            .iter()
            .map(|i| {
                i.origin
                    .strip_prefix(&prefix)
                    .unwrap_or(&i.origin)
                    .to_string()
            })
            .collect()
    }

    fn write(path: &Path, bytes: &[u8]) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn walk_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Walk>();
        assert_send::<Item>();
    }

    #[test]
    fn default_limit_is_64_mib() {
        assert_eq!(WalkOptions::default().max_message_size, 64 * 1024 * 1024);
    }

    #[test]
    fn eml_files_are_byte_exact() {
        let dir = tempfile::tempdir().unwrap();
        let lf = b"Subject: lf\n\nbody\n\n\n".to_vec();
        let crlf = b"Subject: crlf\r\n\r\nbody\r\n>From here\r\n\r\n".to_vec();
        let from = b"From someone@example.com Sat Jan  3 01:05:34 1996\nSubject: x\n\nFrom me\n>From you\n\n".to_vec();
        let no_newline = b"Subject: y\n\nno final newline".to_vec();
        let cases = [
            ("a.eml", &lf),
            ("b.eml", &crlf),
            ("c.EML", &from),
            ("d.eml", &no_newline),
        ];
        for (name, bytes) in cases {
            let path = dir.path().join(name);
            write(&path, bytes);
            let items = collect(std::slice::from_ref(&path), &WalkOptions::default());
            assert_eq!(items.len(), 1, "{name}");
            assert_eq!(items[0].origin, path.display().to_string());
            assert_eq!(ok(&items[0]), &bytes[..], "{name}");
        }
    }

    #[test]
    fn file_without_extension_is_single_unless_from() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("1");
        write(&plain, b"Subject: a\n\nFrom inside the body\n");
        let mbox = dir.path().join("2");
        write(&mbox, b"From a@b Sat Jan  3 01:05:34 1996\nSubject: a\n\n");
        let items = collect(&[plain.clone(), mbox.clone()], &WalkOptions::default());
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].origin, plain.display().to_string());
        assert_eq!(ok(&items[0]), b"Subject: a\n\nFrom inside the body\n");
        assert_eq!(items[1].origin, format!("{}#1", mbox.display()));
        assert_eq!(ok(&items[1]), b"Subject: a\n");
    }

    #[test]
    fn nested_directory_sorted_and_dotfiles_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(&root.join("b.eml"), b"B");
        write(&root.join("a.eml"), b"A");
        write(&root.join(".DS_Store"), b"junk");
        write(&root.join("sub/z.eml"), b"Z");
        write(&root.join("sub/c.eml"), b"C");
        write(&root.join("sub/.hidden/x.eml"), b"X");
        write(&root.join(".git/config"), b"junk");
        write(&root.join("c/deeper/d.eml"), b"D");
        write(&root.join("sub/m.mbox"), b"From x\nM1\n\nFrom y\nM2\n");
        let items = collect(&[root.to_path_buf()], &WalkOptions::default());
        assert_eq!(
            origins(&items, root),
            [
                "a.eml",
                "b.eml",
                "c/deeper/d.eml",
                "sub/c.eml",
                "sub/m.mbox#1",
                "sub/m.mbox#2",
                "sub/z.eml",
            ]
        );
        let bodies: Vec<&[u8]> = items.iter().map(ok).collect();
        assert_eq!(
            bodies,
            [&b"A"[..], b"B", b"D", b"C", b"M1\n", b"M2\n", b"Z"]
        );
    }

    #[test]
    fn symlinks_to_files_followed_to_directories_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        write(&root.join("a.eml"), b"A");
        let outside = dir.path().join("outside.eml");
        write(&outside, b"O");
        std::os::unix::fs::symlink(&outside, root.join("link.eml")).unwrap();
        // A loop: root/loop -> root.
        std::os::unix::fs::symlink(&root, root.join("loop")).unwrap();
        let items = collect(std::slice::from_ref(&root), &WalkOptions::default());
        assert_eq!(origins(&items, &root), ["a.eml", "link.eml"]);
        assert_eq!(ok(&items[1]), b"O");

        // A link to a directory given directly is followed.
        let items = collect(&[root.join("loop")], &WalkOptions::default());
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn maildir_cur_then_new_tmp_ignored_then_subfolders() {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("Mail");
        write(&md.join("cur/2:2,S"), b"cur2");
        write(
            &md.join("cur/1:2,S"),
            b"From x@y Sat Jan  3 01:05:34 1996\ncur1\n\n",
        );
        write(&md.join("cur/.hidden"), b"no");
        write(&md.join("new/3"), b"new3");
        write(&md.join("tmp/4"), b"tmp4");
        write(&md.join("dovecot-uidlist"), b"no");
        write(&md.join(".Sub/cur/5"), b"sub5");
        write(&md.join(".Sub/new/6"), b"sub6");
        write(&md.join(".Archive/new/7"), b"arch7");
        write(&md.join(".NotMaildir/8"), b"no");
        let items = collect(std::slice::from_ref(&md), &WalkOptions::default());
        assert_eq!(
            origins(&items, &md),
            [
                "cur/1:2,S",
                "cur/2:2,S",
                "new/3",
                ".Archive/new/7",
                ".Sub/cur/5",
                ".Sub/new/6",
            ]
        );
        // Maildir files are single messages, byte-exact even with `From `.
        assert_eq!(
            ok(&items[0]),
            b"From x@y Sat Jan  3 01:05:34 1996\ncur1\n\n"
        );
        assert_eq!(ok(&items[5]), b"sub6");

        // Only `new/` is enough to be a Maildir, also when nested.
        let parent = dir.path().join("p");
        write(&parent.join("box/new/1"), b"n1");
        write(&parent.join("box/other/2.eml"), b"ignored");
        let items = collect(std::slice::from_ref(&parent), &WalkOptions::default());
        assert_eq!(origins(&items, &parent), ["box/new/1"]);
    }

    #[test]
    fn mbox_messages_unquoted_and_separator_stripped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive.mbox");
        let mbox = b"From a@example.com Sat Jan  3 01:05:34 1996\n\
Subject: one\n\
\n\
>From the start\n\
>>From quoted twice\n\
> From not quoted\n\
>F\n\
\n\
From b@example.com Sat Jan  3 01:05:35 1996\n\
Subject: two\n\
\n\
ends with blank lines\n\
\n\
\n\
From c@example.com Sat Jan  3 01:05:36 1996\n\
Subject: three\n\
\n\
last\n\
\n";
        write(&path, mbox);
        let items = collect(std::slice::from_ref(&path), &WalkOptions::default());
        let p = path.display().to_string();
        assert_eq!(
            items.iter().map(|i| i.origin.clone()).collect::<Vec<_>>(),
            [format!("{p}#1"), format!("{p}#2"), format!("{p}#3")]
        );
        assert_eq!(
            ok(&items[0]),
            b"Subject: one\n\nFrom the start\n>From quoted twice\n> From not quoted\n>F\n"
        );
        // Exactly one trailing newline is removed.
        assert_eq!(ok(&items[1]), b"Subject: two\n\nends with blank lines\n\n");
        assert_eq!(ok(&items[2]), b"Subject: three\n\nlast\n");
    }

    #[test]
    fn mbox_crlf_and_no_final_blank_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crlf.MBX");
        write(
            &path,
            b"From a\r\nSubject: a\r\n\r\nA\r\n\r\nFrom b\r\nSubject: b\r\n\r\nB\r\n",
        );
        let items = collect(std::slice::from_ref(&path), &WalkOptions::default());
        assert_eq!(items.len(), 2);
        assert_eq!(ok(&items[0]), b"Subject: a\r\n\r\nA\r\n");
        assert_eq!(ok(&items[1]), b"Subject: b\r\n\r\nB\r\n");
    }

    #[test]
    fn mbox_empty_and_preamble() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.mbox");
        write(&empty, b"");
        let blank = dir.path().join("blank.mbox");
        write(&blank, b"\n\n");
        let leading = dir.path().join("leading.mbox");
        write(&leading, b"\nFrom a\nA\n");
        let items = collect(&[empty, blank, leading.clone()], &WalkOptions::default());
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].origin, format!("{}#1", leading.display()));
        assert_eq!(ok(&items[0]), b"A\n");

        // Text before the first `From ` line is not dropped.
        let bare = dir.path().join("bare.mbox");
        write(&bare, b"Subject: no From line\n\nbody\n");
        let items = collect(&[bare], &WalkOptions::default());
        assert_eq!(items.len(), 1);
        assert_eq!(ok(&items[0]), b"Subject: no From line\n\nbody\n");
    }

    /// Found by the `mbox` fuzz target: blank lines before the first
    /// `From ` line, more of them than the size limit, were reported as a
    /// message too large to import instead of being dropped like a shorter
    /// blank preamble; the same for a file of nothing but blank lines.
    #[test]
    fn long_blank_preamble_is_not_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let preamble = dir.path().join("preamble.mbox");
        let mut bytes = b"\r\n".repeat(20);
        bytes.extend_from_slice(b"  \x0c\n\nFrom a\nA\n");
        write(&preamble, &bytes);
        let only_blank = dir.path().join("blank.mbox");
        write(&only_blank, &b" \t\r\n".repeat(100));
        let options = WalkOptions {
            max_message_size: 16,
        };
        let items = collect(&[preamble.clone(), only_blank], &options);
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0].origin, format!("{}#1", preamble.display()));
        assert_eq!(ok(&items[0]), b"A\n");
    }

    #[test]
    fn too_large_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.eml");
        let file = File::create(&path).unwrap();
        // Sparse: large on disk metadata, nothing to read.
        file.set_len(10 * 1024 * 1024 * 1024).unwrap();
        let options = WalkOptions {
            max_message_size: 1024,
        };
        let items = collect(std::slice::from_ref(&path), &options);
        assert_eq!(items.len(), 1);
        assert!(matches!(
            items[0].raw,
            Err(MailboxError::TooLarge {
                size: 10_737_418_240,
                limit: 1024
            })
        ));
        // Exactly at the limit is fine.
        let exact = dir.path().join("exact.eml");
        write(&exact, &[b'x'; 1024]);
        let items = collect(&[exact], &options);
        assert_eq!(ok(&items[0]).len(), 1024);
    }

    #[test]
    fn too_large_mbox_message_then_normal_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.mbox");
        let mut file = File::create(&path).unwrap();
        file.write_all(b"From big\n").unwrap();
        let line = [b'a'; 99];
        for _ in 0..1000 {
            file.write_all(&line).unwrap();
            file.write_all(b"\n").unwrap();
        }
        // One huge line, too.
        file.write_all(&vec![b'b'; 50_000]).unwrap();
        file.write_all(b"\n\nFrom small\nSubject: ok\n\n").unwrap();
        // A message of exactly the limit, with its separator line.
        file.write_all(b"From exact\n").unwrap();
        file.write_all(&[b'c'; 999]).unwrap();
        file.write_all(b"\n\n").unwrap();
        drop(file);
        let options = WalkOptions {
            max_message_size: 1000,
        };
        let items = collect(std::slice::from_ref(&path), &options);
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].origin, format!("{}#1", path.display()));
        match &items[0].raw {
            Err(MailboxError::TooLarge { size, limit }) => {
                assert_eq!(*limit, 1000);
                assert_eq!(*size, 100_000 + 50_001 + 1);
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(items[1].origin, format!("{}#2", path.display()));
        assert_eq!(ok(&items[1]), b"Subject: ok\n");
        assert_eq!(items[2].origin, format!("{}#3", path.display()));
        assert_eq!(ok(&items[2]).len(), 1000);

        // One byte less of limit: the last message no longer fits.
        let options = WalkOptions {
            max_message_size: 999,
        };
        let items = collect(std::slice::from_ref(&path), &options);
        assert!(matches!(
            items[2].raw,
            Err(MailboxError::TooLarge {
                size: 1000,
                limit: 999
            })
        ));
    }

    #[test]
    fn not_found() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.eml");
        let present = dir.path().join("present.eml");
        write(&present, b"P");
        let items = collect(&[missing.clone(), present], &WalkOptions::default());
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].origin, missing.display().to_string());
        match &items[0].raw {
            Err(e @ MailboxError::NotFound { path }) => {
                assert_eq!(path, &missing.display().to_string());
                assert!(e.to_string().ends_with("no such file or directory"));
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert_eq!(ok(&items[1]), b"P");
    }

    #[test]
    fn unreadable_entry_is_an_error_item_and_walk_continues() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(&root.join("a.eml"), b"A");
        write(&root.join("c.eml"), b"C");
        let broken = root.join("b.eml");
        std::os::unix::fs::symlink(root.join("nowhere"), &broken).unwrap();

        // Met while walking the directory.
        let items = collect(&[root.to_path_buf()], &WalkOptions::default());
        assert_eq!(origins(&items, root), ["a.eml", "b.eml", "c.eml"]);
        assert_eq!(ok(&items[0]), b"A");
        assert!(
            matches!(&items[1].raw, Err(MailboxError::Io { path, .. }) if *path == broken.display().to_string())
        );
        assert_eq!(ok(&items[2]), b"C");

        // Given directly.
        let items = collect(std::slice::from_ref(&broken), &WalkOptions::default());
        assert_eq!(items.len(), 1);
        assert!(matches!(items[0].raw, Err(MailboxError::Io { .. })));
    }

    #[test]
    fn spamassassin_corpus_round_trips() {
        let corpus = Path::new("/work/shared/corpus/spamassassin");
        if !corpus.is_dir() {
            println!("skipped: {} is absent", corpus.display());
            return;
        }
        let mut eml_files = 0usize;
        let mut other_files = 0usize;
        let mut stack = vec![corpus.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                if entry.file_name().as_encoded_bytes().starts_with(b".") {
                    continue;
                }
                let ty = entry.file_type().unwrap();
                if ty.is_dir() {
                    stack.push(entry.path());
                } else if entry.path().extension().is_some_and(|e| e == "eml") {
                    eml_files += 1;
                } else {
                    other_files += 1;
                }
            }
        }
        let items = collect(&[corpus.to_path_buf()], &WalkOptions::default());
        // Besides the messages the corpus has a `SOURCES.tsv`, which the walk
        // reports as a (non-mail) file of its own.
        assert_eq!(items.len(), eml_files + other_files);
        let eml_items: Vec<&Item> = items
            .iter()
            .filter(|i| i.origin.ends_with(".eml"))
            .collect();
        assert_eq!(eml_items.len(), eml_files);
        let first = eml_items[0];
        assert_eq!(ok(first), &fs::read(&first.origin).unwrap()[..]);
        assert!(first.raw.as_ref().unwrap().starts_with(b"From "));
        for item in eml_items {
            assert_eq!(
                ok(item),
                &fs::read(&item.origin).unwrap()[..],
                "{}",
                item.origin
            );
        }
    }
}
