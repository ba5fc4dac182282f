//! The wire format: golden bytes, round trips and every decode error.

use fedcore::model;
use fedcore::wire::{
    self, DecodeError, EncodeError, FeatureStats, Frame, FrameKind, Standardization,
};
use fedcore::{Fingerprint, Metrics, Params};

const CAPACITY: usize = wire::frame_capacity::<20, 64, 32>();

fn tiny_params() -> Params<1, 1, 1> {
    let mut params = Params::<1, 1, 1>::zeros();
    for (index, value) in params.iter_mut().enumerate() {
        *value = index as f32 * 0.5 - 1.0;
    }
    params
}

#[test]
fn update_frame_golden_bytes() {
    let mut buffer = [0u8; 64];
    let len = wire::encode_update(&mut buffer, 3, 2, 300, &tiny_params()).unwrap();
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x21,                   // body length: 33 bytes
        0x01,                   // version 1
        0x02,                   // kind: update
        0x01, 0x01, 0x01,       // fingerprint 1 → 1 → 1
        0x03,                   // round 3
        0x02,                   // client 2
        0xac, 0x02,             // 300 rows (varint)
        0x00, 0x00, 0x80, 0xbf, // -1.0
        0x00, 0x00, 0x00, 0xbf, // -0.5
        0x00, 0x00, 0x00, 0x00, // 0.0
        0x00, 0x00, 0x00, 0x3f, // 0.5
        0x00, 0x00, 0x80, 0x3f, // 1.0
        0x00, 0x00, 0xc0, 0x3f, // 1.5
        0x5e, 0x6c, 0x6b, 0x85, // CRC-32 (zlib.crc32 of the bytes above)
    ];
    assert_eq!(&buffer[..len], expected);
}

#[test]
fn golden_crc_is_zlib_crc32() {
    // The frame's CRC is the standard CRC-32 of everything before it;
    // the check value of that algorithm for "123456789" is 0xcbf43926.
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    assert_eq!(crc.checksum(b"123456789"), 0xcbf4_3926);
}

#[test]
fn every_kind_round_trips() {
    let mut buffer = vec![0u8; CAPACITY];
    let params: Params<20, 64, 32> = model::glorot_uniform(7);
    let mut decoded = Params::zeros();

    let len = wire::encode_train(&mut buffer, 4, 1, 3, &params).unwrap();
    let frame = wire::decode(&buffer[..len], &mut decoded).unwrap();
    assert!(
        matches!(frame, Frame::Train { epochs: 3, header } if header.round == 4 && header.client == 1)
    );
    assert_eq!(decoded, params);

    decoded = Params::zeros();
    let len = wire::encode_evaluate(&mut buffer, 4, 1, &params).unwrap();
    assert!(matches!(
        wire::decode(&buffer[..len], &mut decoded).unwrap(),
        Frame::Evaluate { .. }
    ));
    assert_eq!(decoded, params);

    decoded = Params::zeros();
    let len = wire::encode_update(&mut buffer, 4, 1, 800, &params).unwrap();
    assert!(len <= CAPACITY);
    assert!(matches!(
        wire::decode(&buffer[..len], &mut decoded).unwrap(),
        Frame::Update { rows: 800, .. }
    ));
    assert_eq!(decoded, params);

    let metrics = Metrics {
        rows: 200,
        loss_sum: 61.25,
        true_positives: 90,
        false_positives: 7,
        true_negatives: 96,
        false_negatives: 7,
    };
    let len = wire::encode_metrics::<20, 64, 32>(&mut buffer, 4, 1, &metrics).unwrap();
    match wire::decode(&buffer[..len], &mut decoded).unwrap() {
        Frame::Metrics { metrics: got, .. } => assert_eq!(got, metrics),
        other => panic!("{other:?}"),
    }

    let len = wire::encode_stats_request::<20, 64, 32>(&mut buffer, 1).unwrap();
    assert!(matches!(
        wire::decode(&buffer[..len], &mut decoded).unwrap(),
        Frame::StatsRequest { .. }
    ));

    let mut stats = FeatureStats::<20>::default();
    stats.count[3] = 5;
    stats.mean[3] = 2.5;
    stats.m2[3] = 1e300;
    let len = wire::encode_feature_stats::<20, 64, 32>(&mut buffer, 1, &stats).unwrap();
    match wire::decode(&buffer[..len], &mut decoded).unwrap() {
        Frame::FeatureStats { stats: got, .. } => assert_eq!(got, stats),
        other => panic!("{other:?}"),
    }

    let standardization = Standardization::<20> {
        mean: [0.25; 20],
        scale: [2.0; 20],
    };
    let len = wire::encode_standardize::<20, 64, 32>(&mut buffer, 1, &standardization).unwrap();
    match wire::decode(&buffer[..len], &mut decoded).unwrap() {
        Frame::Standardize {
            standardization: got,
            header,
        } => {
            assert_eq!(got, standardization);
            assert_eq!(header.kind, FrameKind::Standardize);
        }
        other => panic!("{other:?}"),
    }
}

fn update_frame() -> Vec<u8> {
    let mut buffer = vec![0u8; 64];
    let len = wire::encode_update(&mut buffer, 3, 2, 300, &tiny_params()).unwrap();
    buffer.truncate(len);
    buffer
}

/// Rewrites the CRC after a deliberate change to the body, so that the
/// decoder gets past the checksum to the check under test.
fn reseal(frame: &mut [u8]) {
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let at = frame.len() - 4;
    let value = crc.checksum(&frame[..at]);
    frame[at..].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn truncated_frame_is_rejected() {
    let frame = update_frame();
    let mut params = Params::<1, 1, 1>::zeros();
    assert_eq!(
        wire::decode(&frame[..frame.len() - 1], &mut params).unwrap_err(),
        DecodeError::Truncated {
            needed: 38,
            available: 37
        }
    );
    assert_eq!(
        wire::decode(&[], &mut params).unwrap_err(),
        DecodeError::Truncated {
            needed: 1,
            available: 0
        }
    );
    for cut in 0..frame.len() {
        assert!(matches!(
            wire::decode(&frame[..cut], &mut params).unwrap_err(),
            DecodeError::Truncated { .. }
        ));
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut frame = update_frame();
    frame.push(0);
    let mut params = Params::<1, 1, 1>::zeros();
    assert_eq!(
        wire::decode(&frame, &mut params).unwrap_err(),
        DecodeError::TrailingBytes { extra: 1 }
    );
}

#[test]
fn every_bit_flip_is_rejected() {
    let frame = update_frame();
    let mut params = Params::<1, 1, 1>::zeros();
    for bit in 0..frame.len() * 8 {
        let mut flipped = frame.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let error = wire::decode(&flipped, &mut params).unwrap_err();
        if bit < 8 {
            // A flip in the length prefix changes where the frame ends.
            assert!(
                matches!(
                    error,
                    DecodeError::Truncated { .. }
                        | DecodeError::TooLong { .. }
                        | DecodeError::TrailingBytes { .. }
                        | DecodeError::Checksum { .. }
                ),
                "bit {bit}: {error:?}"
            );
        } else {
            assert!(
                matches!(error, DecodeError::Checksum { .. }),
                "bit {bit}: {error:?}"
            );
        }
    }
}

#[test]
fn wrong_version_is_rejected() {
    let mut frame = update_frame();
    frame[1] = 2;
    reseal(&mut frame);
    let mut params = Params::<1, 1, 1>::zeros();
    assert_eq!(
        wire::decode(&frame, &mut params).unwrap_err(),
        DecodeError::UnsupportedVersion { found: 2 }
    );
}

#[test]
fn wrong_fingerprint_is_rejected() {
    let frame = update_frame();
    let mut params = Params::<2, 1, 1>::zeros();
    assert_eq!(
        wire::decode(&frame, &mut params).unwrap_err(),
        DecodeError::ModelMismatch {
            expected: Fingerprint {
                inputs: 2,
                hidden1: 1,
                hidden2: 1
            },
            found: Fingerprint {
                inputs: 1,
                hidden1: 1,
                hidden2: 1
            },
        }
    );
}

#[test]
fn non_finite_parameter_is_rejected() {
    let mut frame = update_frame();
    // Parameter 2 (0.0) starts at byte 18; make it +inf.
    frame[18..22].copy_from_slice(&f32::INFINITY.to_le_bytes());
    reseal(&mut frame);
    let mut params = Params::<1, 1, 1>::zeros();
    assert_eq!(
        wire::decode(&frame, &mut params).unwrap_err(),
        DecodeError::NonFinite { index: 2 }
    );
}

#[test]
fn zero_row_update_is_rejected() {
    // Encoders reject 0 rows, so the row count of a 1-row update, the
    // byte after the 1-byte prefix and 7-byte header, is patched to 0.
    let mut buffer = [0u8; 64];
    let len = wire::encode_update(&mut buffer, 1, 1, 1, &tiny_params()).unwrap();
    assert_eq!(buffer[8], 1);
    buffer[8] = 0;
    reseal(&mut buffer[..len]);
    let mut params = Params::<1, 1, 1>::zeros();
    assert_eq!(
        wire::decode(&buffer[..len], &mut params).unwrap_err(),
        DecodeError::NoRows
    );
}

#[test]
fn unknown_kind_is_malformed() {
    let mut frame = update_frame();
    frame[2] = 0x7f;
    reseal(&mut frame);
    let mut params = Params::<1, 1, 1>::zeros();
    assert_eq!(
        wire::decode(&frame, &mut params).unwrap_err(),
        DecodeError::Malformed
    );
}

#[test]
fn short_payload_is_malformed() {
    // A correctly sealed frame whose body lacks its last parameter.
    let frame = update_frame();
    let mut short = frame[..frame.len() - 8].to_vec();
    short[0] -= 4;
    short.extend_from_slice(&[0; 4]);
    reseal(&mut short);
    let mut params = Params::<1, 1, 1>::zeros();
    assert_eq!(
        wire::decode(&short, &mut params).unwrap_err(),
        DecodeError::Malformed
    );
}

#[test]
fn encoder_rejects_small_buffer_and_nan() {
    let mut small = [0u8; 20];
    assert_eq!(
        wire::encode_update(&mut small, 1, 1, 1, &tiny_params()).unwrap_err(),
        EncodeError::BufferTooSmall { available: 20 }
    );
    let mut params = tiny_params();
    params.bias2[0] = f32::NAN;
    let mut buffer = [0u8; 64];
    assert_eq!(
        wire::encode_update(&mut buffer, 1, 1, 1, &params).unwrap_err(),
        EncodeError::NonFinite { index: 3 }
    );
}

#[test]
fn peek_reads_header_only() {
    let frame = update_frame();
    let header = wire::peek_header(&frame).unwrap();
    assert_eq!(header.kind, FrameKind::Update);
    assert_eq!(
        header.fingerprint,
        Fingerprint {
            inputs: 1,
            hidden1: 1,
            hidden2: 1
        }
    );
    assert_eq!((header.round, header.client), (3, 2));
}

#[test]
fn random_bytes_never_panic() {
    // A splitmix64 stream of arbitrary frames, sealed and unsealed.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut params = Params::<1, 1, 1>::zeros();
    for round in 0..20_000 {
        let len = (next() % 48) as usize;
        let mut frame: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if len > 4 && round % 2 == 0 {
            frame[0] = (len - 5) as u8;
            if round % 4 == 0 && len > 6 {
                frame[1] = 1;
                frame[3..6].copy_from_slice(&[1, 1, 1]);
            }
            reseal(&mut frame);
        }
        let _ = wire::decode(&frame, &mut params);
        let _ = wire::peek_header(&frame);
    }
}

#[test]
fn inconsistent_metrics_are_rejected() {
    let mut buffer = [0u8; 64];
    let mut params = Params::<1, 1, 1>::zeros();
    let cases = [
        Metrics {
            rows: 10,
            loss_sum: 1.0,
            true_positives: u32::MAX,
            false_positives: 0,
            true_negatives: 2,
            false_negatives: 3,
        },
        Metrics {
            rows: 10,
            loss_sum: 1.0,
            true_positives: 9,
            false_positives: 0,
            true_negatives: 9,
            false_negatives: 0,
        },
        Metrics {
            rows: 1,
            loss_sum: -0.5,
            true_positives: 1,
            ..Metrics::default()
        },
    ];
    for metrics in cases {
        let len = wire::encode_metrics::<1, 1, 1>(&mut buffer, 1, 1, &metrics).unwrap();
        assert_eq!(
            wire::decode(&buffer[..len], &mut params).unwrap_err(),
            DecodeError::InconsistentMetrics,
            "{metrics:?}"
        );
    }
    // Ratios of counts near u32::MAX cannot overflow.
    let huge = Metrics {
        rows: u32::MAX,
        loss_sum: 0.0,
        true_positives: u32::MAX,
        ..Metrics::default()
    };
    assert_eq!(huge.accuracy(), Some(1.0));
    assert_eq!(huge.sensitivity(), Some(1.0));
}

#[test]
fn invalid_statistics_are_rejected() {
    let mut buffer = vec![0u8; 256];
    let mut params = Params::<2, 1, 1>::zeros();
    // Encoders reject invalid values, so valid frames are patched and
    // resealed. After the 1-byte prefix and 7-byte header come the means,
    // then the scales, 8 bytes each: scale 1 is bytes 32 to 39.
    let standardization = Standardization::<2> {
        mean: [0.0, 0.0],
        scale: [1.0, 2.0],
    };
    let len = wire::encode_standardize::<2, 1, 1>(&mut buffer, 1, &standardization).unwrap();
    buffer[32..40].copy_from_slice(&0.0f64.to_le_bytes());
    reseal(&mut buffer[..len]);
    assert_eq!(
        wire::decode(&buffer[..len], &mut params).unwrap_err(),
        DecodeError::OutOfRange { index: 3 }
    );

    let mut stats = FeatureStats::<2>::default();
    stats.count[0] = 2;
    stats.m2[0] = 1.0;
    let len = wire::encode_feature_stats::<2, 1, 1>(&mut buffer, 1, &stats).unwrap();
    // Counts take a byte each, then two means: m2[0] is bytes 26 to 33.
    assert_eq!(&buffer[26..34], &1.0f64.to_le_bytes());
    buffer[26..34].copy_from_slice(&(-1.0f64).to_le_bytes());
    reseal(&mut buffer[..len]);
    assert_eq!(
        wire::decode(&buffer[..len], &mut params).unwrap_err(),
        DecodeError::OutOfRange { index: 4 }
    );
}

#[test]
fn encoders_reject_undecodable_frames() {
    let mut buffer = vec![0u8; CAPACITY];
    let params: Params<20, 64, 32> = model::glorot_uniform(4);
    assert_eq!(
        wire::encode_update(&mut buffer, 1, 1, 0, &params),
        Err(EncodeError::NoRows)
    );

    let mut standardization = Standardization::<20> {
        mean: [0.0; 20],
        scale: [1.0; 20],
    };
    for features in [0, 21] {
        let error =
            wire::encode_model(&mut buffer, 1, features, &standardization, &params).unwrap_err();
        assert_eq!(
            error,
            EncodeError::FeatureCount {
                features,
                inputs: 20
            }
        );
        assert!(error.to_string().contains("use 1 to 20"), "{error}");
    }
    standardization.scale[0] = 0.0;
    let error = wire::encode_model(&mut buffer, 1, 20, &standardization, &params).unwrap_err();
    assert_eq!(error, EncodeError::OutOfRange { index: 20 });
    assert!(!error.to_string().contains("NaN"), "{error}");
    assert_eq!(
        wire::encode_standardize::<20, 64, 32>(&mut buffer, 1, &standardization),
        Err(EncodeError::OutOfRange { index: 20 })
    );
    standardization.scale[0] = f64::NAN;
    assert_eq!(
        wire::encode_standardize::<20, 64, 32>(&mut buffer, 1, &standardization),
        Err(EncodeError::NonFinite { index: 20 })
    );

    // One field has one index, whichever check fails: counts come first.
    let mut stats = FeatureStats::<20>::default();
    stats.mean[2] = 1.5;
    assert_eq!(
        wire::encode_feature_stats::<20, 64, 32>(&mut buffer, 1, &stats),
        Err(EncodeError::OutOfRange { index: 22 })
    );
    stats.mean[2] = f64::NAN;
    assert_eq!(
        wire::encode_feature_stats::<20, 64, 32>(&mut buffer, 1, &stats),
        Err(EncodeError::NonFinite { index: 22 })
    );
}

#[test]
fn model_frame_with_bad_feature_count_is_rejected() {
    let mut buffer = vec![0u8; CAPACITY];
    let params: Params<20, 64, 32> = model::glorot_uniform(4);
    let standardization = Standardization::<20> {
        mean: [0.0; 20],
        scale: [1.0; 20],
    };
    let len = wire::encode_model(&mut buffer, 1, 20, &standardization, &params).unwrap();
    // The feature count is the one-byte varint after the two-byte prefix
    // and the seven-byte header.
    let at = 2 + 7;
    assert_eq!(buffer[at], 20);
    for features in [0u8, 21] {
        let mut frame = buffer[..len].to_vec();
        frame[at] = features;
        reseal(&mut frame);
        let mut decoded = Params::<20, 64, 32>::zeros();
        assert_eq!(
            wire::decode(&frame, &mut decoded),
            Err(DecodeError::FeatureCount {
                features: u16::from(features),
                inputs: 20
            })
        );
    }
}
