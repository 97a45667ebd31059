//! fcrypt's speed on one core: PCBC encryption and decryption of 64 MiB, as rxkad's crypt
//! level does to every packet, and single-block ECB (the header checksums), in MB/s.

use std::time::Instant;

use rx::rxkad::{kdf, Fcrypt};

fn main() {
    let key = kdf(&[0x5a; 32]).expect("a key");
    let f = Fcrypt::new(&key);
    let mut buf = vec![0x42u8; 64 << 20];
    let mb = buf.len() as f64 / 1e6;
    let best = |run: &mut dyn FnMut()| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                run();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    };
    let enc = best(&mut || {
        for packet in buf.chunks_mut(1424) {
            f.pcbc_encrypt(key, packet);
        }
    });
    let dec = best(&mut || {
        for packet in buf.chunks_mut(1424) {
            f.pcbc_decrypt(key, packet);
        }
    });
    let mut block = [0u8; 8];
    let blocks = 8 << 20;
    let ecb = best(&mut || {
        for _ in 0..blocks {
            block = f.encrypt_block(block);
        }
    });
    std::hint::black_box(block);
    println!("fcrypt on one core (best of 3):");
    println!("  PCBC encrypt, 1424-byte packets  {:8.1} MB/s", mb / enc);
    println!("  PCBC decrypt, 1424-byte packets  {:8.1} MB/s", mb / dec);
    println!(
        "  ECB, one block at a time          {:8.1} MB/s",
        (blocks * 8) as f64 / 1e6 / ecb
    );
}
