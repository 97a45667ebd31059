//! Embedding the `afs` client library in a program of your own.
//!
//! Reads an AFS file, then waits until the fileserver breaks our callback promise
//! on it (someone else changed it) and reads it again.
//!
//! ```text
//! cargo run -p embed-client -- /afs/CELL/path/to/file
//! ```
//! The cell configuration comes from $AFS_CELLSERVDB or /etc/openafs/CellServDB.

use afs::callback::CallbackEvent;
use afs::client::{Client, ClientConfig};
use anyhow::{Context, Result};

async fn read(client: &Client, path: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    client
        .read(path, |chunk| {
            data.extend_from_slice(chunk);
            Ok(())
        })
        .await?;
    Ok(data)
}

#[tokio::main]
async fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: embed-client /afs/CELL/FILE")?;
    let client = Client::new(ClientConfig::default()).await?;
    // Subscribe before reading, so no break can slip in between.
    let mut events = client.subscribe();
    let data = read(&client, &path).await?;
    let node = client.resolve(&path).await?;
    println!(
        "{path}: {} bytes, data version {}",
        data.len(),
        node.status.data_version()
    );
    // A break says "your promise is gone", not "the data changed": look again,
    // and wait for the next break if the data version did not move.
    let mut version = node.status.data_version();
    loop {
        match events.recv().await? {
            CallbackEvent::Broken { fids, .. } if fids.contains(&node.fid) => {}
            CallbackEvent::ServerReset { server, .. } if server == node.server => {}
            _ => continue,
        }
        let now = client.fetch_status(&node.cell, node.fid).await?;
        if now.status.data_version() == version {
            continue;
        }
        version = now.status.data_version();
        let data = read(&client, &path).await?;
        println!(
            "{path} changed: {} bytes, data version {version}",
            data.len()
        );
        break;
    }
    client.give_up_callbacks().await;
    Ok(())
}
