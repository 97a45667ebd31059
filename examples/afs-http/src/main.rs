//! afs-http: a `wasi:http` handler, as a user of `afs-wasm serve` would write one. It serves
//! the files of a directory: `GET /NAME` answers the file `NAME`, rendered into an HTML
//! template; `GET /` lists the directory.
//!
//! ```text
//! afs-wasm serve --dir /afs/CELL/site/data::/data:ro --grant /afs/CELL/site:ro \
//!     --env TEMPLATE=/afs/CELL/site/template.html afs-http.wasm
//! ```
//!
//! The data is read with `std::fs` from the preopened `/data`. The template is **mapped**
//! (`afs-guest`): every request's instance maps it afresh and reads it as plain memory, and
//! the host keeps it coherent, so a request that starts after someone changed the template
//! renders with the new one. In the template, `{{title}}` becomes the file's name and
//! `{{content}}` its contents (HTML-escaped). Each response says which data version of the
//! template it used, in `x-afs-template-version`.

use afs_guest::File;
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Handler;

/// What a request is answered with.
struct Page {
    status: u16,
    version: Option<u64>,
    body: Vec<u8>,
}

impl Guest for Handler {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let page = match request.method() {
            Method::Get => serve(&request.path_with_query().unwrap_or_default()),
            _ => Page::text(405, "only GET\n"),
        };
        send(out, page);
    }
}

wasip2::http::proxy::export!(Handler);

impl Page {
    fn text(status: u16, text: &str) -> Page {
        Page {
            status,
            version: None,
            body: text.as_bytes().to_vec(),
        }
    }
}

fn serve(path: &str) -> Page {
    let name = path.split('?').next().unwrap_or("").trim_start_matches('/');
    if name.contains('/') || name.starts_with('.') {
        return Page::text(404, "no such file\n");
    }
    let (title, content) = if name.is_empty() {
        match listing() {
            Ok(list) => ("index".to_string(), list),
            Err(e) => return Page::text(500, &format!("cannot list /data: {e}\n")),
        }
    } else {
        match std::fs::read(format!("/data/{name}")) {
            Ok(bytes) => (
                name.to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Page::text(404, "no such file\n")
            }
            Err(e) => return Page::text(500, &format!("cannot read {name}: {e}\n")),
        }
    };
    match render(&title, &content) {
        Ok((body, version)) => Page {
            status: 200,
            version,
            body,
        },
        Err(e) => Page::text(500, &format!("template: {e}\n")),
    }
}

/// The names in /data, one a line.
fn listing() -> std::io::Result<String> {
    let mut names = std::fs::read_dir("/data")?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names.join("\n"))
}

/// The page, from the template; and the template's data version it was rendered from when
/// it is an AFS file, which is mapped. (A local template, read with `std::fs`, lets the same component run
/// under a stock wasmtime for comparison: it never calls `afs:client` then.)
fn render(title: &str, content: &str) -> Result<(Vec<u8>, Option<u64>), String> {
    let path = std::env::var("TEMPLATE").map_err(|_| "TEMPLATE is not set".to_string())?;
    let fill = |template: &str| {
        template
            .replace("{{title}}", &escape(title))
            .replace("{{content}}", &escape(content))
            .into_bytes()
    };
    if !path.starts_with("/afs/") {
        let template = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
        return Ok((fill(&String::from_utf8_lossy(&template)), None));
    }
    let file = File::open(&path).map_err(|e| e.to_string())?;
    // The version the page says it used must be the one it was rendered from: a change
    // can land between the stat and the mapping (another length) or while the page is
    // rendered (the pages are stripped and refetched mid-way). Render again until the
    // version is the same before and after.
    let mut tries = 0;
    loop {
        tries += 1;
        let stat = file.stat().map_err(|e| e.to_string())?;
        if stat.length == 0 {
            return Err(format!("{path} is empty"));
        }
        let mapping = file.map_read(0..stat.length).map_err(|e| e.to_string())?;
        let page = fill(&String::from_utf8_lossy(&mapping));
        let after = mapping.data_version();
        if after == stat.data_version {
            return Ok((page, Some(after)));
        }
        if tries == 5 {
            return Err(format!(
                "{path} changed {tries} times while the page was rendered"
            ));
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn send(out: ResponseOutparam, page: Page) {
    let headers = Fields::new();
    let content_type = if page.status == 200 {
        "text/html; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let _ = headers.set("content-type", &[content_type.as_bytes().to_vec()]);
    if let Some(v) = page.version {
        let _ = headers.set("x-afs-template-version", &[v.to_string().into_bytes()]);
    }
    let response = OutgoingResponse::new(headers);
    let _ = response.set_status_code(page.status);
    let body = response.body().expect("the body, taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("the body's stream, taken once");
    for chunk in page.body.chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            return; // the client went away
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}

fn main() {}
