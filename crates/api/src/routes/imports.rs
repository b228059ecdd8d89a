//! `POST /v1/imports`: a retailer's CSV file of codes into stock, streamed.

use std::collections::HashMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use strongroom_vouchers::{ImportJob, ImportOptions, ImportReport, VoucherError};
use utoipa::ToSchema;

use crate::ApiState;
use crate::auth::Authenticated;
use crate::context::Ctx;
use crate::error::ApiError;

/// Records parsed per message from the parsing thread.
const CHUNK: usize = 256;
/// Longest row accepted, bytes: a voucher row is well under 1 KiB, and the
/// parser holds one row in memory at a time.
const MAX_ROW_BYTES: usize = 64 * 1024;
/// An upload that sends nothing for this long is abandoned.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Passes bytes through while no CSV record grows past [`MAX_ROW_BYTES`]
/// (a newline inside quotes does not end a record), so a file that is one
/// endless row cannot fill memory.
struct RowLimit<R> {
    inner: R,
    in_quotes: bool,
    row_bytes: usize,
}

impl<R: std::io::Read> std::io::Read for RowLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in buf.get(..n).unwrap_or_default() {
            match b {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => {
                    self.row_bytes = 0;
                    continue;
                }
                _ => {}
            }
            self.row_bytes += 1;
            if self.row_bytes > MAX_ROW_BYTES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "row too long",
                ));
            }
        }
        Ok(n)
    }
}

/// One refused row of an import.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// Row number in the file; the header is row 1.
    pub row: u64,
    /// The column at fault (empty for the whole row).
    pub column: String,
    /// Why. Never the code.
    pub reason: String,
}

/// The outcome of an import.
#[derive(Serialize, ToSchema)]
pub struct ImportResult {
    /// The job's id.
    pub import_id: String,
    /// `completed`, `dry_run`, or `discarded` (all or nothing, and a row
    /// was refused: nothing was stocked).
    pub status: String,
    /// Data rows read.
    pub rows: u64,
    /// Rows now in stock (in a dry run: that passed their checks).
    pub accepted: u64,
    /// Rows refused for their content.
    pub rejected: u64,
    /// Rows whose code is already held.
    pub duplicates: u64,
    /// The first 1,000 refused rows, duplicates included.
    pub problems: Vec<Problem>,
}

impl From<ImportReport> for ImportResult {
    fn from(r: ImportReport) -> Self {
        ImportResult {
            import_id: r.import_id,
            status: r.status,
            rows: r.rows,
            accepted: r.accepted,
            rejected: r.rejected,
            duplicates: r.duplicates,
            problems: r
                .problems
                .into_iter()
                .map(|p| Problem {
                    row: p.row,
                    column: p.column,
                    reason: p.reason,
                })
                .collect(),
        }
    }
}

/// What the parsing thread sends: numbered rows, a row that is not text, or
/// the end of a readable file.
enum Parsed {
    Rows(Vec<(u64, csv::StringRecord)>),
    NotText(u64),
    Broken(String),
}

/// `POST /v1/imports?retailer=R[&tenant=T][&dry_run=true]`, with the CSV
/// file as the body (`text/csv`). Every row is checked; valid rows go into
/// stock as dormant vault tokens; bad rows and duplicates are reported. The
/// file is read as it arrives and never kept.
#[utoipa::path(
    post,
    path = "/v1/imports",
    tag = "catalog",
    params(
        ("retailer" = String, Query, description = "The retailer whose codes the file holds, by id or name"),
        ("tenant" = Option<String>, Query, description = "Tenant; may be left out by a caller bound to one"),
        ("dry_run" = Option<bool>, Query, description = "Check every row, store nothing"),
        ("all_or_nothing" = Option<bool>, Query, description = "Stock every valid row only if no row is refused; otherwise stock none")
    ),
    request_body(content = String, content_type = "text/csv", description = "Header row `sku,code,face_value,currency[,pin,expires_at,serial]`, then one voucher per row"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Imported: the report", body = ImportResult),
        (status = 200, description = "Dry run: the report of what would be imported; or all or nothing with a refused row (`status: discarded`): the report, nothing stocked", body = ImportResult),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`catalog.not_found`: no such retailer in the tenant", body = crate::openapi::ErrorBody)
    )
)]
pub async fn import(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    // A map never fails to parse, so odd query strings get our error shape.
    Query(query): Query<HashMap<String, String>>,
    body: Body,
) -> Result<(StatusCode, Json<ImportResult>), ApiError> {
    let dry_run = match query.get("dry_run").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid("dry_run is true or false")),
    };
    let all_or_nothing = match query.get("all_or_nothing").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::invalid("all_or_nothing is true or false")),
    };
    let options = ImportOptions {
        tenant: query.get("tenant").cloned(),
        retailer: query.get("retailer").cloned().unwrap_or_default(),
        dry_run,
        all_or_nothing,
    };
    let Ok(_permit) = state.import_permits.clone().try_acquire_owned() else {
        return Err(ApiError::rate_limited(5));
    };
    let mut job = ImportJob::start(state.vault.clone(), &who, &ctx, options).await?;

    // Parse on a blocking thread as the body arrives, in bounded chunks:
    // memory stays flat however large the file.
    let limited = http_body_util::Limited::new(
        body,
        usize::try_from(state.config.max_import_bytes).unwrap_or(usize::MAX),
    );
    let stream = http_body_util::BodyDataStream::new(limited).map_err(std::io::Error::other);
    // A chunk must arrive at least every IDLE_TIMEOUT.
    let stream = futures_util::stream::unfold(Some(stream), |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(IDLE_TIMEOUT, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no data for 30 seconds",
                )),
                None,
            )),
        }
    });
    let reader = tokio_util::io::StreamReader::new(Box::pin(stream));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Parsed>(4);
    let parser = tokio::task::spawn_blocking(move || {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(RowLimit {
                inner: tokio_util::io::SyncIoBridge::new(reader),
                in_quotes: false,
                row_bytes: 0,
            });
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut record = csv::StringRecord::new();
        let mut row: u64 = 0;
        loop {
            row += 1;
            match csv.read_record(&mut record) {
                Ok(true) => {
                    chunk.push((row, std::mem::take(&mut record)));
                    if chunk.len() >= CHUNK
                        && tx
                            .blocking_send(Parsed::Rows(std::mem::take(&mut chunk)))
                            .is_err()
                    {
                        return;
                    }
                }
                Ok(false) => break,
                Err(e) if matches!(e.kind(), csv::ErrorKind::Utf8 { .. }) => {
                    if !chunk.is_empty()
                        && tx
                            .blocking_send(Parsed::Rows(std::mem::take(&mut chunk)))
                            .is_err()
                    {
                        return;
                    }
                    if tx.blocking_send(Parsed::NotText(row)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Parsed::Broken(match e.kind() {
                        csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                            format!("row {row} is longer than {MAX_ROW_BYTES} bytes: is this a CSV file of vouchers?")
                        }
                        csv::ErrorKind::Io(io) => format!("the upload broke off: {io}"),
                        _ => "the file could not be read as CSV".to_owned(),
                    }));
                    return;
                }
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(Parsed::Rows(chunk));
        }
    });

    let outcome = async {
        let mut header_seen = false;
        while let Some(message) = rx.recv().await {
            match message {
                Parsed::Rows(rows) => {
                    for (row, record) in rows {
                        let fields: Vec<&str> = record.iter().collect();
                        if header_seen {
                            job.row(row, &fields).await?;
                        } else {
                            job.header(fields.iter().copied())?;
                            header_seen = true;
                        }
                    }
                }
                Parsed::NotText(row) => {
                    if !header_seen {
                        return Err(VoucherError::Invalid(
                            "the header row is not UTF-8 text".into(),
                        ));
                    }
                    job.not_text(row);
                }
                Parsed::Broken(why) => return Err(VoucherError::Invalid(why)),
            }
        }
        Ok(())
    }
    .await;
    drop(rx);
    let _ = parser.await;
    if let Err(e) = outcome {
        job.fail(e.code()).await;
        return Err(e.into());
    }
    let report = job.finish().await?;
    let status = if dry_run || report.status == "discarded" {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(report.into())))
}

/// Body of `POST /v1/imports/{id}/void`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidImport {
    /// Tenant; may be left out by a caller bound to one.
    tenant: Option<String>,
    /// Why, for each voucher's history (e.g. "recalled by the retailer").
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
}

/// `POST /v1/imports/{id}/void`.
#[derive(Serialize, ToSchema)]
pub struct Voided {
    /// Vouchers taken out of stock.
    pub voided: u64,
}

/// `POST /v1/imports/{id}/void`: takes every voucher of an import still in
/// stock out of it for good (a retailer recalled the file's codes).
#[utoipa::path(
    post,
    path = "/v1/imports/{id}/void",
    tag = "catalog",
    request_body = VoidImport,
    params(("id" = String, Path, description = "The import's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Voided", body = Voided),
        (status = 400, response = crate::openapi::Invalid),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, description = "`catalog.not_found`: no such import in the tenant", body = crate::openapi::ErrorBody)
    )
)]
pub async fn void(
    State(state): State<ApiState>,
    Ctx(ctx): Ctx,
    Authenticated(who): Authenticated,
    axum::extract::Path(id): axum::extract::Path<String>,
    crate::json::ApiJson(body): crate::json::ApiJson<VoidImport>,
) -> Result<Json<Voided>, ApiError> {
    let voided = strongroom_vouchers::stock::void_import(
        &state.vault,
        &who,
        &ctx,
        body.tenant.as_deref(),
        &id,
        &body.reason,
    )
    .await?;
    Ok(Json(Voided { voided }))
}
