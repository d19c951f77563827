//! The HTTP side: routes a request to version and discovery answers, a list, a get or a
//! watch, and writes responses the way the API server does.

use crate::filter::Filter;
use crate::history::ObjectKey;
use crate::page::{list_page, Page, PageError};
use crate::query::ListQuery;
use crate::resource::{ResourcePath, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::shared::{RecordedRequest, Shared};
use crate::watch::{start_watch, WatchOptions, WatchStart};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// The response body type: a whole JSON document or a watch stream.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// Answers one request.
pub(crate) async fn handle<B>(
    shared: Arc<Shared>,
    request: Request<B>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_string();
    let query = ListQuery::parse(request.uri().query().unwrap_or(""));
    let resource_path = ResourcePath::parse(&path);
    shared.record(RecordedRequest {
        resource: resource_path.as_ref().map(|p| p.resource),
        watch: query.watch,
        resource_version: query.resource_version.clone(),
        path_and_query: request
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or(path.clone()),
    });
    if request.method() != Method::GET {
        return Ok(status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the fake API server only serves GET",
        ));
    }
    let response = match (resource_path, discovery(&path)) {
        (_, Some(document)) => json_response(StatusCode::OK, &document),
        (Some(target), None) => serve_resource(&shared, target, &query),
        (None, None) => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("the server could not find {path}"),
        ),
    };
    Ok(response)
}

fn serve_resource(shared: &Arc<Shared>, target: ResourcePath, query: &ListQuery) -> Response<Body> {
    if let Some(name) = target.name.clone() {
        return get_object(shared, target, name);
    }
    let filter = match request_filter(&target, query) {
        Ok(filter) => filter,
        Err(message) => return status(StatusCode::BAD_REQUEST, "BadRequest", &message),
    };
    if !query.watch {
        return list(shared, &filter, query);
    }
    let start = match query.resource_version.as_deref() {
        None | Some("") | Some("0") => WatchStart::Now,
        Some(version) => match version.parse() {
            Ok(version) => WatchStart::After(version),
            Err(_) => {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    &format!("invalid resourceVersion {version:?}"),
                )
            }
        },
    };
    let options = WatchOptions {
        start,
        bookmarks: query.allow_bookmarks,
        timeout: query.timeout_seconds.map(Duration::from_secs),
    };
    let lines = start_watch(shared, filter, options);
    let stream = futures::stream::unfold(lines, |mut lines| async move {
        let line = lines.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(line)), lines))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed())
        .unwrap_or_else(|_| internal_error())
}

fn request_filter(target: &ResourcePath, query: &ListQuery) -> Result<Filter, String> {
    let labels = LabelSelector::parse(query.label_selector.as_deref().unwrap_or(""))
        .map_err(|e| e.to_string())?;
    let fields = FieldSelector::parse(query.field_selector.as_deref().unwrap_or(""))
        .map_err(|e| e.to_string())?;
    Ok(Filter {
        resource: target.resource,
        namespace: target.namespace.clone(),
        labels,
        fields,
    })
}

fn list(shared: &Shared, filter: &Filter, query: &ListQuery) -> Response<Body> {
    let resource = filter.resource;
    // The page borrows the stored objects, so it is written out under the lock.
    let body = shared.read(|history| {
        list_page(
            history,
            filter,
            query.limit,
            query.continue_token.as_deref(),
        )
        .map(|page| list_body(resource, &page))
    });
    match body {
        Ok(Ok(body)) => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)).boxed())
            .unwrap_or_else(|_| internal_error()),
        Ok(Err(_)) => internal_error(),
        Err(PageError::BadToken(message)) => {
            status(StatusCode::BAD_REQUEST, "BadRequest", &message)
        }
        Err(PageError::Expired(expired)) => {
            let message = format!(
                "the continue token's resourceVersion {} is older than {}; list again",
                expired.requested, expired.oldest
            );
            status(StatusCode::GONE, "Expired", &message)
        }
    }
}

/// A page as the API server's `<Kind>List` document, written item by item (a list of ten
/// thousand objects is served without copying them).
fn list_body(resource: ResourceType, page: &Page<'_>) -> serde_json::Result<Vec<u8>> {
    let mut metadata = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(token) = &page.continue_token {
        metadata["continue"] = token.as_str().into();
    }
    let mut body = Vec::new();
    body.extend_from_slice(b"{\"kind\":");
    serde_json::to_writer(&mut body, &format!("{}List", resource.kind()))?;
    body.extend_from_slice(b",\"apiVersion\":");
    serde_json::to_writer(&mut body, resource.api_version())?;
    body.extend_from_slice(b",\"metadata\":");
    serde_json::to_writer(&mut body, &metadata)?;
    body.extend_from_slice(b",\"items\":[");
    for (index, item) in page.items.iter().enumerate() {
        if index > 0 {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, item.as_ref())?;
    }
    body.extend_from_slice(b"]}");
    Ok(body)
}

fn get_object(shared: &Shared, target: ResourcePath, name: String) -> Response<Body> {
    let key = ObjectKey {
        resource: target.resource,
        namespace: target.namespace.unwrap_or_default(),
        name,
    };
    match shared.read(|history| history.object(&key).cloned()) {
        Some(object) => json_response(StatusCode::OK, &object),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{} \"{}\" not found", target.resource.plural(), key.name),
        ),
    }
}

/// Version and discovery documents, for the paths clients ask before anything else.
fn discovery(path: &str) -> Option<Value> {
    let resources = |resource: &[ResourceType]| -> Vec<Value> {
        resource
            .iter()
            .map(|r| {
                json!({"name": r.plural(), "singularName": r.kind().to_lowercase(), "namespaced": r.namespaced(),
                       "kind": r.kind(), "verbs": ["get", "list", "watch"]})
            })
            .collect()
    };
    let document = match path.trim_end_matches('/') {
        "/version" => json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-kproxy-testapi",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
        }),
        "/api" => {
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        }
        "/apis" => json!({
            "kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{"name": "discovery.k8s.io",
                        "versions": [{"groupVersion": "discovery.k8s.io/v1", "version": "v1"}],
                        "preferredVersion": {"groupVersion": "discovery.k8s.io/v1", "version": "v1"}}],
        }),
        "/api/v1" => json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
                            "resources": resources(&[ResourceType::Services, ResourceType::Nodes])}),
        "/apis/discovery.k8s.io/v1" => json!({"kind": "APIResourceList", "apiVersion": "v1",
                            "groupVersion": "discovery.k8s.io/v1",
                            "resources": resources(&[ResourceType::EndpointSlices])}),
        _ => return None,
    };
    Some(document)
}

/// A `Status` failure response, as the API server sends for errors.
fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code.as_u16(),
        }),
    )
}

fn json_response(code: StatusCode, document: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(document.to_string())).boxed())
        .unwrap_or_else(|_| internal_error())
}

fn internal_error() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}
