//! A small JSON API served by axum on a pipe (`\\.\pipe\NAME`, on Unix the socket the name
//! maps to), with the client's process id and user in every answer.
//!
//! ```text
//! cargo run -p pipewright-http --features axum --example axum_json -- notes-api
//! pipewright http npipe:////./pipe/notes-api/whoami
//! pipewright http -X POST -H 'content-type: application/json' -d '{"text":"hi"}' npipe:////./pipe/notes-api/notes
//! pipewright http npipe:////./pipe/notes-api/notes
//! ```
//!
//! - `GET /whoami`: `{"pid":1234,"user":"uid 1000"}`, the caller as the pipe reports it;
//! - `POST /notes` with `{"text":"..."}`: stores a note, answers it with its id, 201;
//! - `GET /notes`: every note; `GET /notes/{id}`: one note, or 404 with a JSON error.
//!
//! It prints `ready NAME` once the pipe is served, and stops on Ctrl+C.

use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use pipewright_http::axum::{PipeAddr, PipeListener};
use serde::{Deserialize, Serialize};

/// Who called, as the pipe reports it.
#[derive(Debug, Serialize, Deserialize)]
struct Whoami {
    pid: Option<u32>,
    user: Option<String>,
}

/// A note as stored and answered, with the pid of the client that posted it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Note {
    id: usize,
    text: String,
    author_pid: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct NewNote {
    text: String,
}

type Notes = Arc<Mutex<Vec<Note>>>;

async fn whoami(ConnectInfo(addr): ConnectInfo<PipeAddr>) -> Json<Whoami> {
    Json(Whoami {
        pid: addr.peer().and_then(|p| p.pid),
        user: addr
            .peer()
            .and_then(|p| p.user.as_ref())
            .map(|u| u.to_string()),
    })
}

async fn list_notes(State(notes): State<Notes>) -> Json<Vec<Note>> {
    Json(notes.lock().unwrap().clone())
}

async fn get_note(
    State(notes): State<Notes>,
    Path(id): Path<usize>,
) -> Result<Json<Note>, (StatusCode, Json<serde_json::Value>)> {
    let notes = notes.lock().unwrap();
    match notes.iter().find(|n| n.id == id) {
        Some(note) => Ok(Json(note.clone())),
        None => Err((
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("no note {id}") })),
        )),
    }
}

async fn add_note(
    State(notes): State<Notes>,
    ConnectInfo(addr): ConnectInfo<PipeAddr>,
    Json(new): Json<NewNote>,
) -> (StatusCode, Json<Note>) {
    let mut notes = notes.lock().unwrap();
    let note = Note {
        id: notes.len() + 1,
        text: new.text,
        author_pid: addr.peer().and_then(|p| p.pid),
    };
    notes.push(note.clone());
    (StatusCode::CREATED, Json(note))
}

fn app() -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/notes", get(list_notes).post(add_note))
        .route("/notes/{id}", get(get_note))
        .with_state(Notes::default())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "pipewright-axum-json".into());
    let listener = PipeListener::bind(name.as_str())?;
    println!("ready {}", listener.get_ref().name());
    axum::serve(
        listener,
        app().into_make_service_with_connect_info::<PipeAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
