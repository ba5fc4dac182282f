//! Streaming frames: `read_frame` must give what `decode` gives for the
//! same bytes, and the `write_*` functions must send what the `encode_*`
//! functions encode, whatever the size of the pieces the bytes move in.

use fedcore::model;
use fedcore::wire::{
    self, DecodeError, EncodeError, FeatureStats, Frame, ReadError, Sink, Source, Standardization,
    WriteError,
};
use fedcore::{Metrics, Params};

/// Hands out at most `piece` bytes per read, as a serial port might.
struct Pieces<'a> {
    bytes: &'a [u8],
    piece: usize,
}

impl Source for Pieces<'_> {
    type Error = ();

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ()> {
        let len = buf.len().min(self.piece).min(self.bytes.len());
        buf[..len].copy_from_slice(&self.bytes[..len]);
        self.bytes = &self.bytes[len..];
        Ok(len)
    }
}

/// Records what is written, in pieces.
#[derive(Default)]
struct Recorder {
    bytes: Vec<u8>,
    writes: usize,
}

impl Sink for Recorder {
    type Error = ();

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), ()> {
        self.bytes.extend_from_slice(bytes);
        self.writes += 1;
        Ok(())
    }
}

const PIECES: [usize; 5] = [1, 3, 7, 64, usize::MAX];

/// Reads `bytes` with `read_frame` in pieces of each size and checks the
/// outcome against `decode`.
fn check_same_as_decode<const I: usize, const H1: usize, const H2: usize>(bytes: &[u8]) {
    let mut expected_params = Params::<I, H1, H2>::zeros();
    let expected = wire::decode(bytes, &mut expected_params);
    for piece in PIECES {
        let mut source = Pieces { bytes, piece };
        let mut buffer = vec![0u8; wire::stream_buffer_len::<I, H1, H2>()];
        let mut params = Params::<I, H1, H2>::zeros();
        let got = wire::read_frame(&mut source, &mut buffer, &mut params);
        match (&expected, got) {
            (Ok(frame), Ok(Some(got))) => {
                assert_eq!(frame, &got, "piece {piece}");
                assert_eq!(params, expected_params, "piece {piece}");
                assert!(source.bytes.is_empty(), "piece {piece}");
            }
            (Err(DecodeError::TrailingBytes { extra }), _) => {
                // The stream cannot tell trailing bytes from the next
                // frame: it reads the frame that the prefix delimits.
                check_same_as_decode::<I, H1, H2>(&bytes[..bytes.len() - extra]);
                return;
            }
            (Err(DecodeError::Truncated { needed: 1, .. }), Ok(None)) => {
                assert!(bytes.is_empty());
            }
            (Err(error), Err(ReadError::Decode(got))) => {
                assert_eq!(error, &got, "piece {piece}");
            }
            (expected, got) => {
                panic!("piece {piece}: decode gave {expected:?}, read_frame {got:?}")
            }
        }
    }
}

fn reseal(frame: &mut [u8]) {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let at = frame.len() - 4;
    let value = crc.checksum(&frame[..at]);
    frame[at..].copy_from_slice(&value.to_le_bytes());
}

/// Frames of every kind for the `I → H1 → H2 → 1` model.
fn frames<const I: usize, const H1: usize, const H2: usize>() -> Vec<Vec<u8>> {
    let params: Params<I, H1, H2> = model::glorot_uniform(7);
    let mut buffer = vec![0u8; wire::frame_capacity::<I, H1, H2>()];
    let mut frames = Vec::new();
    let mut keep = |len: usize, buffer: &[u8]| frames.push(buffer[..len].to_vec());

    let len = wire::encode_train(&mut buffer, 4, 1, 3, &params).unwrap();
    keep(len, &buffer);
    let len = wire::encode_evaluate(&mut buffer, 4, 1, &params).unwrap();
    keep(len, &buffer);
    let len = wire::encode_update(&mut buffer, 4, 1, 800, &params).unwrap();
    keep(len, &buffer);
    let metrics = Metrics {
        rows: 200,
        loss_sum: 61.25,
        true_positives: 90,
        false_positives: 7,
        true_negatives: 96,
        false_negatives: 7,
    };
    let len = wire::encode_metrics::<I, H1, H2>(&mut buffer, 4, 1, &metrics).unwrap();
    keep(len, &buffer);
    let len = wire::encode_stats_request::<I, H1, H2>(&mut buffer, 1).unwrap();
    keep(len, &buffer);
    let mut stats = FeatureStats::<I>::default();
    for (index, count) in stats.count.iter_mut().enumerate() {
        *count = u32::MAX - index as u32;
        stats.mean[index] = -1e300;
        stats.m2[index] = 1e300;
    }
    let len = wire::encode_feature_stats::<I, H1, H2>(&mut buffer, 1, &stats).unwrap();
    keep(len, &buffer);
    let standardization = Standardization::<I> {
        mean: [0.25; I],
        scale: [2.0; I],
    };
    let len = wire::encode_standardize::<I, H1, H2>(&mut buffer, 1, &standardization).unwrap();
    keep(len, &buffer);
    let len = wire::encode_model(&mut buffer, 9, I as u16, &standardization, &params).unwrap();
    keep(len, &buffer);
    frames
}

/// Checks that every frame reads as it decodes: whole, cut short, with a
/// byte changed, and with changes that pass the checksum.
fn check_model<const I: usize, const H1: usize, const H2: usize>(stride: usize) {
    for frame in frames::<I, H1, H2>() {
        check_same_as_decode::<I, H1, H2>(&frame);
        for cut in (0..frame.len()).step_by(stride) {
            check_same_as_decode::<I, H1, H2>(&frame[..cut]);
        }
        let mut longer = frame.clone();
        longer.extend_from_slice(&[0, 1, 2]);
        check_same_as_decode::<I, H1, H2>(&longer);
        for at in (0..frame.len())
            .step_by(stride)
            .chain(0..24.min(frame.len()))
        {
            for change in [0x01, 0x80, 0xff] {
                let mut changed = frame.clone();
                changed[at] ^= change;
                check_same_as_decode::<I, H1, H2>(&changed);
                // With the checksum repaired, the checks behind it run.
                reseal(&mut changed);
                check_same_as_decode::<I, H1, H2>(&changed);
            }
        }
    }
}

#[test]
fn long_and_short_frames_read_as_they_decode() {
    // Its parameter frames are longer than the stream buffer, so they take
    // the streaming path; its other frames go through decode.
    let buffer = wire::stream_buffer_len::<2, 4, 3>();
    let update = frames::<2, 4, 3>()[2].len();
    assert!(update > buffer, "{update} <= {buffer}");
    check_model::<2, 4, 3>(1);
}

#[test]
fn default_model_frames_read_as_they_decode() {
    check_model::<20, 64, 32>(97);
}

#[test]
fn stream_buffer_is_small_for_the_default_model() {
    assert_eq!(wire::stream_buffer_len::<20, 64, 32>(), 450);
    assert_eq!(wire::frame_capacity::<20, 64, 32>(), 14_181);
    let mut longest = 0;
    for frame in frames::<20, 64, 32>() {
        if !matches!(frame[2], 0 | 1 | 2 | 7) {
            longest = longest.max(frame.len());
        }
    }
    assert!(longest <= 450, "{longest}");
}

/// A frame whose body length was changed and resealed: too few or too
/// many parameter bytes, or more bytes than any frame of the model has.
#[test]
fn wrong_parameter_counts_read_as_they_decode() {
    let frame = &frames::<2, 4, 3>()[2];
    // The body follows the varint length prefix and ends before the CRC.
    let prefix_len = frame.iter().position(|&byte| byte & 0x80 == 0).unwrap() + 1;
    let body = &frame[prefix_len..frame.len() - 4];
    assert_eq!(body[0], wire::VERSION);
    for (drop, add) in [(4, 0), (1, 0), (0, 1), (0, 4), (0, 400)] {
        let mut changed = body[..body.len() - drop].to_vec();
        changed.extend(std::iter::repeat_n(0x7f, add));
        let mut framed = Vec::new();
        let mut len = changed.len();
        while len >= 0x80 {
            framed.push((len as u8) | 0x80);
            len >>= 7;
        }
        framed.push(len as u8);
        framed.extend_from_slice(&changed);
        framed.extend_from_slice(&[0; 4]);
        reseal(&mut framed);
        let mut params = Params::<2, 4, 3>::zeros();
        let error = wire::decode(&framed, &mut params).unwrap_err();
        if framed.len() > wire::frame_capacity::<2, 4, 3>() {
            assert!(matches!(error, DecodeError::TooLong { .. }), "{error:?}");
        } else {
            assert_eq!(error, DecodeError::Malformed, "{drop} dropped, {add} added");
        }
        check_same_as_decode::<2, 4, 3>(&framed);
    }
}

#[test]
fn non_finite_and_zero_rows_match_decode() {
    let mut params: Params<2, 4, 3> = model::glorot_uniform(3);
    let mut buffer = vec![0u8; wire::frame_capacity::<2, 4, 3>()];
    // Encoders reject 0 rows, so a 1-row update is patched to 0 rows. The
    // row count is the one-byte varint before the 31 parameters.
    let len = wire::encode_update(&mut buffer, 1, 1, 1, &params).unwrap();
    let at = len - 4 - 31 * 4 - 1;
    assert_eq!(buffer[at], 1);
    buffer[at] = 0;
    reseal(&mut buffer[..len]);
    let mut decoded = Params::<2, 4, 3>::zeros();
    assert_eq!(
        wire::decode(&buffer[..len], &mut decoded),
        Err(DecodeError::NoRows)
    );
    check_same_as_decode::<2, 4, 3>(&buffer[..len]);

    *params.iter_mut().nth(20).unwrap() = 1.0;
    let len = wire::encode_update(&mut buffer, 1, 1, 5, &params).unwrap();
    // Parameter 20 of 31 starts 4 × 11 bytes before the end of the
    // parameters, which the 4-byte CRC follows.
    let at = len - 4 - (31 - 20) * 4;
    buffer[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    reseal(&mut buffer[..len]);
    let mut params = Params::<2, 4, 3>::zeros();
    assert_eq!(
        wire::decode(&buffer[..len], &mut params),
        Err(DecodeError::NonFinite { index: 20 })
    );
    check_same_as_decode::<2, 4, 3>(&buffer[..len]);
}

#[test]
fn random_bytes_read_as_they_decode() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let len = (next() % 300) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Mostly plausible starts, so that the checks past the prefix run.
        if len > 5 && next() % 2 == 0 {
            bytes[0] = (len - 5).min(0x7f) as u8;
            bytes[1] = 1;
        }
        check_same_as_decode::<2, 4, 3>(&bytes);
        check_same_as_decode::<20, 64, 32>(&bytes);
    }
}

#[test]
fn back_to_back_frames_read_in_turn() {
    let all = frames::<20, 64, 32>();
    let joined: Vec<u8> = all.concat();
    let mut source: &[u8] = &joined;
    let mut buffer = vec![0u8; wire::stream_buffer_len::<20, 64, 32>()];
    let mut params = Params::<20, 64, 32>::zeros();
    for frame in &all {
        let mut expected_params = Params::<20, 64, 32>::zeros();
        let expected = wire::decode(frame, &mut expected_params).unwrap();
        let got = wire::read_frame(&mut source, &mut buffer, &mut params).unwrap();
        assert_eq!(got, Some(expected));
    }
    assert_eq!(
        wire::read_frame(&mut source, &mut buffer, &mut params).unwrap(),
        None
    );
}

#[test]
fn small_buffer_and_failing_source_are_errors() {
    struct Broken;
    impl Source for Broken {
        type Error = &'static str;
        fn read(&mut self, _: &mut [u8]) -> Result<usize, &'static str> {
            Err("port closed")
        }
    }
    let mut params = Params::<20, 64, 32>::zeros();
    let mut small = [0u8; 449];
    let error = wire::read_frame(&mut Broken, &mut small, &mut params).unwrap_err();
    assert_eq!(
        error,
        ReadError::BufferTooSmall {
            needed: 450,
            available: 449
        }
    );
    assert!(error.to_string().contains("wire::stream_buffer_len"));
    let mut buffer = [0u8; 450];
    assert_eq!(
        wire::read_frame(&mut Broken, &mut buffer, &mut params).unwrap_err(),
        ReadError::Io("port closed")
    );
}

#[test]
fn written_frames_equal_encoded_frames() {
    let params: Params<20, 64, 32> = model::glorot_uniform(11);
    let mut buffer = vec![0u8; wire::frame_capacity::<20, 64, 32>()];
    for (round, client) in [(0, 0), (1, 2), (300, 70_000), (u32::MAX, u32::MAX)] {
        let mut sink = Recorder::default();
        let len = wire::write_update(&mut sink, round, client, 800, &params).unwrap();
        let expected = wire::encode_update(&mut buffer, round, client, 800, &params).unwrap();
        assert_eq!((len, &sink.bytes[..]), (expected, &buffer[..expected]));
        // 256-byte pieces: no frame buffer on the sending side.
        assert!(sink.writes > len / 256);

        let mut sink = Recorder::default();
        let len = wire::write_train(&mut sink, round, client, 7, &params).unwrap();
        let expected = wire::encode_train(&mut buffer, round, client, 7, &params).unwrap();
        assert_eq!((len, &sink.bytes[..]), (expected, &buffer[..expected]));

        let mut sink = Recorder::default();
        let len = wire::write_evaluate(&mut sink, round, client, &params).unwrap();
        let expected = wire::encode_evaluate(&mut buffer, round, client, &params).unwrap();
        assert_eq!((len, &sink.bytes[..]), (expected, &buffer[..expected]));
    }

    let tiny: Params<1, 1, 1> = model::glorot_uniform(2);
    let mut sink = Recorder::default();
    let len = wire::write_update(&mut sink, 3, 2, 300, &tiny).unwrap();
    let expected = wire::encode_update(&mut buffer, 3, 2, 300, &tiny).unwrap();
    assert_eq!(&sink.bytes[..len], &buffer[..expected]);
}

#[test]
fn writing_non_finite_parameters_sends_nothing() {
    let mut params: Params<20, 64, 32> = model::glorot_uniform(11);
    *params.iter_mut().nth(100).unwrap() = f32::INFINITY;
    let mut sink = Recorder::default();
    assert_eq!(
        wire::write_update(&mut sink, 1, 1, 800, &params).unwrap_err(),
        WriteError::Encode(EncodeError::NonFinite { index: 100 })
    );
    assert!(sink.bytes.is_empty());
}

#[test]
fn written_update_reads_back() {
    let params: Params<20, 64, 32> = model::glorot_uniform(5);
    let mut sink = Recorder::default();
    wire::write_update(&mut sink, 2, 3, 640, &params).unwrap();
    let mut source: &[u8] = &sink.bytes;
    let mut buffer = vec![0u8; wire::stream_buffer_len::<20, 64, 32>()];
    let mut got = Params::zeros();
    let frame = wire::read_frame(&mut source, &mut buffer, &mut got).unwrap();
    assert!(
        matches!(frame, Some(Frame::Update { rows: 640, header }) if header.round == 2 && header.client == 3)
    );
    assert_eq!(got, params);
}

/// Counts the bytes handed out from an endless stream of zeros.
struct Endless {
    bytes_read: usize,
}

impl Source for Endless {
    type Error = ();

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ()> {
        buf.fill(0);
        self.bytes_read += buf.len();
        Ok(buf.len())
    }
}

#[test]
fn overlong_prefix_rejected_before_body() {
    let max = wire::frame_capacity::<20, 64, 32>();
    // 2^32 - 1 bytes of body, then endless zeros.
    let prefix = [0xff, 0xff, 0xff, 0xff, 0x0f];
    let mut params = Params::<20, 64, 32>::zeros();
    let error = wire::decode(&prefix, &mut params).unwrap_err();
    assert!(
        matches!(error, DecodeError::TooLong { max: m, claimed } if m == max && claimed > max),
        "{error:?}"
    );
    assert!(error.to_string().contains("resynchronise"));

    let mut stream = prefix.to_vec();
    stream.resize(100_000, 0);
    check_same_as_decode::<20, 64, 32>(&stream);

    struct PrefixThenZeros {
        prefix: &'static [u8],
        zeros: Endless,
    }
    impl Source for PrefixThenZeros {
        type Error = ();
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, ()> {
            if let Some((&first, rest)) = self.prefix.split_first() {
                buf[0] = first;
                self.prefix = rest;
                return Ok(1);
            }
            self.zeros.read(buf)
        }
    }
    let mut source = PrefixThenZeros {
        prefix: &[0xff, 0xff, 0xff, 0xff, 0x0f],
        zeros: Endless { bytes_read: 0 },
    };
    let mut buffer = vec![0u8; wire::stream_buffer_len::<20, 64, 32>()];
    let error = wire::read_frame(&mut source, &mut buffer, &mut params).unwrap_err();
    assert!(matches!(
        error,
        ReadError::Decode(DecodeError::TooLong { .. })
    ));
    assert_eq!(
        source.zeros.bytes_read, 0,
        "nothing after the prefix is read"
    );

    // A model frame, the longest kind, still reads.
    let standardization = Standardization::<20> {
        mean: [0.0; 20],
        scale: [1.0; 20],
    };
    let model: Params<20, 64, 32> = model::glorot_uniform(1);
    let mut frame = vec![0u8; max];
    let len = wire::encode_model(&mut frame, u32::MAX, 20, &standardization, &model).unwrap();
    assert!(len <= max);
    check_same_as_decode::<20, 64, 32>(&frame[..len]);
}
