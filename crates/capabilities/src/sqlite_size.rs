//! The size limit of an embedded SQLite file, shared by the key-value and SQL backends.
//!
//! SQLite's `max_page_count` holds per connection, so every connection sets it; SQLite keeps
//! it at least the file's current size, so a file already larger (the limit was lowered) can
//! still be read, updated in place and shrunk, not grown. A statement that needs pages past
//! the limit fails with `SQLITE_FULL`, as a full disk does; [`at_size_limit`] tells them apart.

use rusqlite::{Connection, ErrorCode};

/// How far short of its page limit a file may stop when a statement that needs more pages
/// than are left is refused (a B-tree split takes a few at once).
const FULL_MARGIN_PAGES: i64 = 16;

/// What a write-ahead log file is truncated to after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 4 << 20;

/// The most pages a SQLite file may have.
const SQLITE_MAX_PAGE_COUNT: u64 = 0xffff_fffe;

/// Limits the file of `conn` to `max_size` bytes (in whole pages, at least one). The
/// write-ahead log is emptied at each checkpoint but its file keeps its largest size unless
/// told otherwise: it is truncated too, so the disk holds little beyond the limit.
pub(crate) fn limit_size(conn: &Connection, max_size: u64) -> rusqlite::Result<()> {
    let page_size: i64 = conn.pragma_query_value(None, "page_size", |row| row.get(0))?;
    let max_pages = max_size / page_size.max(512) as u64;
    let max_pages = i64::try_from(max_pages.clamp(1, SQLITE_MAX_PAGE_COUNT)).unwrap_or(1);
    conn.pragma_update(None, "max_page_count", max_pages)?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
}

/// Whether `error` is SQLite refusing to grow the file of `conn` past its size limit (rather
/// than a full disk, which stays a failure of the store).
pub(crate) fn at_size_limit(conn: &Connection, error: &rusqlite::Error) -> bool {
    if error.sqlite_error_code() != Some(ErrorCode::DiskFull) {
        return false;
    }
    let pages = |pragma| conn.pragma_query_value(None, pragma, |row| row.get::<_, i64>(0));
    matches!((pages("page_count"), pages("max_page_count")),
        (Ok(count), Ok(max)) if count + FULL_MARGIN_PAGES >= max)
}
