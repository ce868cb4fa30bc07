//! The classic pcap file format (libpcap 2.4, microsecond timestamps, LINKTYPE_ETHERNET):
//! a writer with caller-supplied (deterministic) timestamps, and a reader for tests.

use std::io::{self, Write};

use super::{Error, Field, Result};

mod field {
    use super::Field;
    pub const MAGIC: Field = 0..4;
    pub const VERSION_MAJOR: Field = 4..6;
    pub const VERSION_MINOR: Field = 6..8;
    pub const SNAPLEN: Field = 16..20;
    pub const LINKTYPE: Field = 20..24;
    pub const TS_SEC: Field = 0..4;
    pub const TS_USEC: Field = 4..8;
    pub const INCL_LEN: Field = 8..12;
    pub const ORIG_LEN: Field = 12..16;
}

/// Magic number of microsecond-resolution files (written little-endian).
pub const MAGIC: u32 = 0xa1b2_c3d4;
/// Link type Ethernet.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Length of the file header.
pub const FILE_HEADER_LEN: usize = 24;
/// Length of a record header.
pub const RECORD_HEADER_LEN: usize = 16;
/// Snapshot length the writer declares.
pub const SNAPLEN: u32 = 65535;

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The file header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Snapshot length.
    pub snaplen: u32,
    /// Link type.
    pub linktype: u32,
}

impl FileHeader {
    /// Decodes a little-endian microsecond file header.
    ///
    /// # Errors
    /// `Truncated` for a short buffer, `Malformed` for another magic or version.
    pub fn parse(b: &[u8]) -> Result<FileHeader> {
        if b.len() < FILE_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if le32(&b[field::MAGIC]) != MAGIC {
            return Err(Error::Malformed(
                "not a little-endian microsecond pcap file",
            ));
        }
        let major = u16::from_le_bytes([b[field::VERSION_MAJOR][0], b[field::VERSION_MAJOR][1]]);
        let minor = u16::from_le_bytes([b[field::VERSION_MINOR][0], b[field::VERSION_MINOR][1]]);
        if (major, minor) != (2, 4) {
            return Err(Error::Malformed("pcap version is not 2.4"));
        }
        Ok(FileHeader {
            snaplen: le32(&b[field::SNAPLEN]),
            linktype: le32(&b[field::LINKTYPE]),
        })
    }

    /// The 24 header bytes.
    pub fn to_bytes(&self) -> [u8; FILE_HEADER_LEN] {
        let mut b = [0u8; FILE_HEADER_LEN];
        b[field::MAGIC].copy_from_slice(&MAGIC.to_le_bytes());
        b[field::VERSION_MAJOR].copy_from_slice(&2u16.to_le_bytes());
        b[field::VERSION_MINOR].copy_from_slice(&4u16.to_le_bytes());
        b[field::SNAPLEN].copy_from_slice(&self.snaplen.to_le_bytes());
        b[field::LINKTYPE].copy_from_slice(&self.linktype.to_le_bytes());
        b
    }
}

/// A record header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Timestamp, microseconds since the epoch.
    pub ts_micros: u64,
    /// Bytes captured.
    pub incl_len: u32,
    /// Bytes on the wire.
    pub orig_len: u32,
}

impl RecordHeader {
    /// Decodes a record header.
    ///
    /// # Errors
    /// `Truncated` for a short buffer, `Malformed` for microseconds ≥ 1,000,000 or a captured
    /// length above the original length.
    pub fn parse(b: &[u8]) -> Result<RecordHeader> {
        if b.len() < RECORD_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let usec = le32(&b[field::TS_USEC]);
        if usec >= 1_000_000 {
            return Err(Error::Malformed("pcap microseconds out of range"));
        }
        let r = RecordHeader {
            ts_micros: u64::from(le32(&b[field::TS_SEC])) * 1_000_000 + u64::from(usec),
            incl_len: le32(&b[field::INCL_LEN]),
            orig_len: le32(&b[field::ORIG_LEN]),
        };
        if r.incl_len > r.orig_len {
            return Err(Error::Malformed(
                "pcap captured length above original length",
            ));
        }
        Ok(r)
    }

    /// The 16 header bytes.
    pub fn to_bytes(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut b = [0u8; RECORD_HEADER_LEN];
        let secs = (self.ts_micros / 1_000_000).min(u64::from(u32::MAX)) as u32;
        b[field::TS_SEC].copy_from_slice(&secs.to_le_bytes());
        b[field::TS_USEC].copy_from_slice(&((self.ts_micros % 1_000_000) as u32).to_le_bytes());
        b[field::INCL_LEN].copy_from_slice(&self.incl_len.to_le_bytes());
        b[field::ORIG_LEN].copy_from_slice(&self.orig_len.to_le_bytes());
        b
    }
}

/// Writes Ethernet frames into a pcap stream.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
}

impl<W: Write> Writer<W> {
    /// Writes the file header.
    ///
    /// # Errors
    /// The underlying writer's.
    pub fn new(mut out: W) -> io::Result<Writer<W>> {
        out.write_all(
            &FileHeader {
                snaplen: SNAPLEN,
                linktype: LINKTYPE_ETHERNET,
            }
            .to_bytes(),
        )?;
        Ok(Writer { out })
    }

    /// Writes one frame with its timestamp (microseconds since the epoch); frames longer than
    /// the snapshot length are cut.
    ///
    /// # Errors
    /// The underlying writer's.
    pub fn write_frame(&mut self, ts_micros: u64, frame: &[u8]) -> io::Result<()> {
        let orig = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let incl = orig.min(SNAPLEN);
        self.out.write_all(
            &RecordHeader {
                ts_micros,
                incl_len: incl,
                orig_len: orig,
            }
            .to_bytes(),
        )?;
        self.out.write_all(&frame[..incl as usize])
    }

    /// Flushes and returns the writer.
    ///
    /// # Errors
    /// The underlying writer's.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The records of a pcap file: header and captured bytes.
pub type Records<'a> = Vec<(RecordHeader, &'a [u8])>;

/// Reads every record of a pcap file.
///
/// # Errors
/// A bad file header, or a record that is malformed or cut short.
pub fn read_all(bytes: &[u8]) -> Result<(FileHeader, Records<'_>)> {
    let header = FileHeader::parse(bytes)?;
    let mut rest = &bytes[FILE_HEADER_LEN..];
    let mut records = Vec::new();
    while !rest.is_empty() {
        let r = RecordHeader::parse(rest)?;
        let end = RECORD_HEADER_LEN + r.incl_len as usize;
        let data = rest.get(RECORD_HEADER_LEN..end).ok_or(Error::Truncated)?;
        records.push((r, data));
        rest = &rest[end..];
    }
    Ok((header, records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    static FILE_HEADER: [u8; 24] = [
        0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0,
    ];

    #[test]
    fn writes_the_libpcap_layout() {
        let mut w = Writer::new(Vec::new()).expect("header");
        w.write_frame(1_500_000, &[1, 2, 3]).expect("frame");
        let bytes = w.finish().expect("finish");
        assert_eq!(bytes[..24], FILE_HEADER);
        assert_eq!(
            bytes[24..40],
            [1, 0, 0, 0, 0x20, 0xa1, 0x07, 0, 3, 0, 0, 0, 3, 0, 0, 0]
        );
        let (h, recs) = read_all(&bytes).expect("read");
        assert_eq!(h.linktype, LINKTYPE_ETHERNET);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].0.ts_micros, 1_500_000);
        assert_eq!(recs[0].1, &[1, 2, 3]);
    }

    proptest! {
        #[test]
        fn round_trip(frames in proptest::collection::vec((any::<u32>(), proptest::collection::vec(any::<u8>(), 0..100)), 0..8)) {
            let mut w = Writer::new(Vec::new()).expect("header");
            for (ts, f) in &frames {
                w.write_frame(u64::from(*ts), f).expect("frame");
            }
            let bytes = w.finish().expect("finish");
            let (_, recs) = read_all(&bytes).expect("read");
            prop_assert_eq!(recs.len(), frames.len());
            for ((r, data), (ts, f)) in recs.iter().zip(&frames) {
                prop_assert_eq!(r.ts_micros, u64::from(*ts));
                prop_assert_eq!(*data, &f[..]);
            }
        }

        #[test]
        fn garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = read_all(&bytes);
            if bytes.len() >= 24 {
                bytes[..24].copy_from_slice(&FILE_HEADER);
                let _ = read_all(&bytes);
            }
        }
    }
}
