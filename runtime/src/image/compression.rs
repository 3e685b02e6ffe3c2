//! Detection of gzip and zstd streams by their magic numbers, so a layer or
//! an archive is read correctly regardless of its media type or file name.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "plain",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

impl Compression {
    /// Returns the compression that `prefix`, the first bytes of a stream,
    /// starts with.
    pub fn sniff(prefix: &[u8]) -> Self {
        if prefix.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if prefix.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Peeks at the start of `reader` and returns its compression and a reader
/// of the decompressed bytes.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buffered = BufReader::with_capacity(64 * 1024, reader);
    let compression = Compression::sniff(buffered.fill_buf()?);
    let decompressed: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(buffered),
        // MultiGzDecoder reads every gzip member, as `gzip -d` does.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
    };
    Ok((compression, decompressed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn decompress_round_trips_each_format() {
        let plain = b"layer bytes".repeat(100);
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&plain).unwrap();
        let gzip = gzip.finish().unwrap();
        let zstd = zstd::encode_all(&plain[..], 3).unwrap();

        for (input, expected) in [
            (plain.clone(), Compression::None),
            (gzip, Compression::Gzip),
            (zstd, Compression::Zstd),
        ] {
            let (compression, mut reader) = decompress(&input[..]).unwrap();
            assert_eq!(compression, expected);
            let mut output = Vec::new();
            reader.read_to_end(&mut output).unwrap();
            assert_eq!(output, plain, "{expected} did not round-trip");
        }
    }
}
