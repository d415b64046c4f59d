//! An in-memory stand-in for Qdrant's gRPC API, for the multi-process tests and the benchmarks:
//! it implements only what engram's Qdrant adapter (src/index/qdrant.rs) calls, with simplified
//! semantics, and is NOT evidence that the adapter works with a real Qdrant (the index
//! contract suite runs against a real server only, with `ENGRAM_TEST_QDRANT_URL`).
//!
//! What it serves, on one 127.0.0.1 port, over qdrant-client's own generated gRPC services:
//! `Qdrant/HealthCheck`; `Collections/{CollectionExists, Create, Get}`;
//! `Points/{CreateFieldIndex, Upsert, Delete, Count, Query, QueryBatch}`. Every other RPC
//! answers `UNIMPLEMENTED`, and so do options of these RPCs the adapter does not use (they
//! are refused rather than silently ignored).
//!
//! Semantics, kept simple but in Qdrant's terms: points live per collection (id → named
//! vectors + payload) and an upsert replaces a point whole; filters evaluate `must`, `should`
//! and `must_not` over top-level payload keys (match keyword / integer / bool / any-of, numeric
//! ranges, has-id, nested filters); dense scores are cosine or dot products, exact (no HNSW);
//! sparse scores are dot products over shared indices, with the query's weights multiplied by
//! `ln(1 + (N - n + 0.5) / (n + 0.5))` when the vector was created with the IDF modifier (`N`
//! points with that vector in the collection, `n` of them having the term); prefetches are
//! run with the outer filter and their own, and fused by RRF as Qdrant scores it:
//! Σ weight / (k + rank), ranks from 0, k = 2 unless the query names one. Writes are applied
//! at once (`wait` is moot); there are no shards, replicas, segments, snapshots or payload
//! index effects (a field index is only recorded in the collection's schema).
//!
//! A test can read what it holds (`points`, `points_for_document`, `collections`), the RPCs
//! it received (`calls`), and make it unavailable (`set_down`: every RPC answers UNAVAILABLE).
//! It stops when its handle is dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use qdrant_client::qdrant::collections_server::{Collections, CollectionsServer};
use qdrant_client::qdrant::condition::ConditionOneOf;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::points_selector::PointsSelectorOneOf;
use qdrant_client::qdrant::points_server::{Points, PointsServer};
use qdrant_client::qdrant::qdrant_server::{Qdrant, QdrantServer};
use qdrant_client::qdrant::r#match::MatchValue;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::vectors::VectorsOptions;
use qdrant_client::qdrant::vectors_config::Config as VectorsConfigKind;
use qdrant_client::qdrant::with_payload_selector::SelectorOptions;
use qdrant_client::qdrant::with_vectors_selector::SelectorOptions as VectorsSelectorOptions;
use qdrant_client::qdrant::{self as q, query, vector, vector_input};
use qdrant_client::qdrant::{
    Condition, Distance, FieldCondition, Filter, Fusion, Modifier, PayloadSchemaInfo, PointId,
    PrefetchQuery, Query, Value,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

/// Qdrant's own RRF constant when a query names none (its `Fusion::Rrf` and `Rrf { k: None }`).
pub const DEFAULT_RRF_K: u32 = 2;
/// Qdrant's default `limit` of a query and of a prefetch.
const DEFAULT_LIMIT: u64 = 10;
/// Requests up to this size are accepted (Qdrant's default `max_request_size_mb` is 32).
const MAX_MESSAGE: usize = 32 * 1024 * 1024;
/// What the health check answers as its version: it names itself a fake, so `engram doctor`
/// run against it cannot pass it off as a Qdrant release.
pub const VERSION: &str = "0.0.0-engram-fake (in-memory test stand-in, not Qdrant)";

/// A running fake; stops when dropped.
#[derive(Debug)]
pub struct FakeQdrant {
    /// `http://127.0.0.1:PORT`: what `index.qdrant_url` names.
    pub url: String,
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
}

/// Binds 127.0.0.1 on a free port and serves until the handle is dropped. It is served on
/// the caller's Tokio runtime: a test that blocks its thread (a synchronous wait on a child
/// process) needs a multi-thread runtime, or the fake stalls with it.
pub async fn start() -> FakeQdrant {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fake Qdrant");
    let addr = listener.local_addr().expect("the fake Qdrant's address");
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let state = Arc::new(State::default());
    let service = Service {
        state: state.clone(),
    };
    let stop = CancellationToken::new();
    let router = Server::builder()
        .add_service(QdrantServer::new(service.clone()).max_decoding_message_size(MAX_MESSAGE))
        .add_service(CollectionsServer::new(service.clone()).max_decoding_message_size(MAX_MESSAGE))
        .add_service(PointsServer::new(service).max_decoding_message_size(MAX_MESSAGE));
    let stopped = stop.clone().cancelled_owned();
    tokio::spawn(async move {
        if let Err(error) = router.serve_with_incoming_shutdown(incoming, stopped).await {
            eprintln!("the fake Qdrant stopped: {error}");
        }
    });
    FakeQdrant {
        url: format!("http://{addr}"),
        addr,
        state,
        stop,
    }
}

impl FakeQdrant {
    /// Points in `collection` (0 when it does not exist).
    pub fn points(&self, collection: &str) -> usize {
        self.state
            .collections()
            .get(collection)
            .map_or(0, |c| c.points.len())
    }

    /// Points in `collection` whose payload's `document_id` is `document` (engram's key).
    pub fn points_for_document(&self, collection: &str, document: i64) -> usize {
        self.state.collections().get(collection).map_or(0, |c| {
            c.points
                .values()
                .filter(|p| {
                    p.payload.get("document_id").and_then(|v| v.kind.as_ref())
                        == Some(&Kind::IntegerValue(document))
                })
                .count()
        })
    }

    /// Names of the collections, sorted.
    pub fn collections(&self) -> Vec<String> {
        self.state.collections().keys().cloned().collect()
    }

    /// Every RPC received, in order, as `Service/Method` (e.g. `Points/Upsert`), including
    /// those answered UNAVAILABLE or UNIMPLEMENTED.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.state.calls)
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// How many times `rpc` (`Service/Method`) was received.
    pub fn calls_to(&self, rpc: &str) -> usize {
        lock(&self.state.calls)
            .iter()
            .filter(|c| **c == rpc)
            .count()
    }

    /// While down, every RPC answers UNAVAILABLE (what a client sees of an overloaded or
    /// restarting server); the data is kept.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Stops serving (also done on drop); established connections are closed once idle.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for FakeQdrant {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[derive(Debug, Default)]
struct State {
    down: AtomicBool,
    operations: AtomicU64,
    calls: Mutex<Vec<&'static str>>,
    collections: Mutex<BTreeMap<String, Collection>>,
}

impl State {
    fn collections(&self) -> MutexGuard<'_, BTreeMap<String, Collection>> {
        lock(&self.collections)
    }
}

/// A poisoned lock only means a test panicked elsewhere; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Clone)]
struct Collection {
    /// As created, echoed back by `Collections/Get`.
    vectors_config: Option<q::VectorsConfig>,
    sparse_vectors_config: Option<q::SparseVectorConfig>,
    /// Dense vectors by name (`""` for an unnamed one): width and distance.
    dense: HashMap<String, (usize, Distance)>,
    /// Sparse vectors by name: whether the IDF modifier is on.
    sparse: HashMap<String, bool>,
    /// Field indexes: field name → (PayloadSchemaType, params).
    payload_schema: BTreeMap<String, (i32, Option<q::PayloadIndexParams>)>,
    points: BTreeMap<Key, Stored>,
}

/// A point id: Qdrant's two kinds, ordered numbers first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Num(u64),
    Uuid(String),
}

impl Key {
    fn from_id(id: Option<&PointId>) -> Result<Self, Status> {
        match id.and_then(|id| id.point_id_options.as_ref()) {
            Some(PointIdOptions::Num(n)) => Ok(Key::Num(*n)),
            Some(PointIdOptions::Uuid(u)) => Ok(Key::Uuid(u.to_lowercase())),
            None => Err(Status::invalid_argument("a point id is required")),
        }
    }

    fn to_id(&self) -> PointId {
        match self {
            Key::Num(n) => PointId::from(*n),
            Key::Uuid(u) => PointId::from(u.clone()),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Stored {
    dense: HashMap<String, Vec<f32>>,
    /// Sorted by index.
    sparse: HashMap<String, Vec<(u32, f32)>>,
    payload: HashMap<String, Value>,
}

#[derive(Debug, Clone)]
struct Service {
    state: Arc<State>,
}

type Rpc<T> = Result<Response<T>, Status>;

impl Service {
    /// Records the call; refuses it while the fake is down.
    fn enter(&self, rpc: &'static str) -> Result<Instant, Status> {
        lock(&self.state.calls).push(rpc);
        if self.state.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable(
                "the fake Qdrant is down (set_down(true))",
            ));
        }
        Ok(Instant::now())
    }

    /// The answer to a write that `start`ed then: completed, with the next operation id.
    fn updated(&self, start: Instant) -> Response<q::PointsOperationResponse> {
        Response::new(q::PointsOperationResponse {
            result: Some(q::UpdateResult {
                operation_id: Some(self.state.operations.fetch_add(1, Ordering::SeqCst)),
                status: q::UpdateStatus::Completed as i32,
            }),
            time: start.elapsed().as_secs_f64(),
            usage: None,
        })
    }

    fn with_collection<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut Collection) -> Result<T, Status>,
    ) -> Result<T, Status> {
        let mut collections = self.state.collections();
        let collection = collections
            .get_mut(name)
            .ok_or_else(|| Status::not_found(format!("Collection `{name}` doesn't exist!")))?;
        f(collection)
    }
}

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "the fake Qdrant implements only what engram's adapter calls, not {rpc}"
    ))
}

/// An impl of a generated service trait: the listed methods as written, every other method of
/// the trait answering UNIMPLEMENTED (after `enter`, so the call is recorded).
macro_rules! service {
    (
        impl $trait:ident as $service:literal {
            $($implemented:tt)*
        }
        unimplemented {
            $($name:ident = $grpc:literal ($request:ident) -> $response:ident;)*
        }
    ) => {
        #[async_trait::async_trait]
        impl $trait for Service {
            $($implemented)*
            $(
                async fn $name(&self, _request: Request<q::$request>) -> Rpc<q::$response> {
                    let rpc = concat!($service, "/", $grpc);
                    self.enter(rpc)?;
                    Err(unimplemented(rpc))
                }
            )*
        }
    };
}

service! {
    impl Qdrant as "Qdrant" {
        async fn health_check(
            &self,
            _request: Request<q::HealthCheckRequest>,
        ) -> Rpc<q::HealthCheckReply> {
            self.enter("Qdrant/HealthCheck")?;
            Ok(Response::new(q::HealthCheckReply {
                title: "engram's fake Qdrant".to_string(),
                version: VERSION.to_string(),
                commit: None,
            }))
        }
    }
    unimplemented {}
}

service! {
    impl Collections as "Collections" {
        async fn collection_exists(
            &self,
            request: Request<q::CollectionExistsRequest>,
        ) -> Rpc<q::CollectionExistsResponse> {
            let start = self.enter("Collections/CollectionExists")?;
            let name = request.into_inner().collection_name;
            let exists = self.state.collections().contains_key(&name);
            Ok(Response::new(q::CollectionExistsResponse {
                result: Some(q::CollectionExists { exists }),
                time: start.elapsed().as_secs_f64(),
            }))
        }

        async fn create(
            &self,
            request: Request<q::CreateCollection>,
        ) -> Rpc<q::CollectionOperationResponse> {
            let start = self.enter("Collections/Create")?;
            let request = request.into_inner();
            let name = request.collection_name.clone();
            let collection = new_collection(request)?;
            let mut collections = self.state.collections();
            if collections.contains_key(&name) {
                return Err(Status::already_exists(format!(
                    "Wrong input: Collection `{name}` already exists!"
                )));
            }
            collections.insert(name, collection);
            Ok(Response::new(q::CollectionOperationResponse {
                result: true,
                time: start.elapsed().as_secs_f64(),
            }))
        }

        async fn get(
            &self,
            request: Request<q::GetCollectionInfoRequest>,
        ) -> Rpc<q::GetCollectionInfoResponse> {
            let start = self.enter("Collections/Get")?;
            let name = request.into_inner().collection_name;
            let info = self.with_collection(&name, |c| Ok(collection_info(c)))?;
            Ok(Response::new(q::GetCollectionInfoResponse {
                result: Some(info),
                time: start.elapsed().as_secs_f64(),
            }))
        }
    }
    unimplemented {
        list = "List" (ListCollectionsRequest) -> ListCollectionsResponse;
        update = "Update" (UpdateCollection) -> CollectionOperationResponse;
        delete = "Delete" (DeleteCollection) -> CollectionOperationResponse;
        update_aliases = "UpdateAliases" (ChangeAliases) -> CollectionOperationResponse;
        list_collection_aliases = "ListCollectionAliases"
            (ListCollectionAliasesRequest) -> ListAliasesResponse;
        list_aliases = "ListAliases" (ListAliasesRequest) -> ListAliasesResponse;
        collection_cluster_info = "CollectionClusterInfo"
            (CollectionClusterInfoRequest) -> CollectionClusterInfoResponse;
        update_collection_cluster_setup = "UpdateCollectionClusterSetup"
            (UpdateCollectionClusterSetupRequest) -> UpdateCollectionClusterSetupResponse;
        create_shard_key = "CreateShardKey" (CreateShardKeyRequest) -> CreateShardKeyResponse;
        delete_shard_key = "DeleteShardKey" (DeleteShardKeyRequest) -> DeleteShardKeyResponse;
        list_shard_keys = "ListShardKeys" (ListShardKeysRequest) -> ListShardKeysResponse;
    }
}

service! {
    impl Points as "Points" {
        async fn create_field_index(
            &self,
            request: Request<q::CreateFieldIndexCollection>,
        ) -> Rpc<q::PointsOperationResponse> {
            let start = self.enter("Points/CreateFieldIndex")?;
            let request = request.into_inner();
            let field_type = request
                .field_type
                .ok_or_else(|| Status::invalid_argument("field_type is required"))?;
            if q::FieldType::try_from(field_type).is_err() {
                return Err(Status::invalid_argument(format!("unknown field type {field_type}")));
            }
            self.with_collection(&request.collection_name, |c| {
                // PayloadSchemaType counts from UnknownType = 0; FieldType from Keyword = 0.
                c.payload_schema
                    .insert(request.field_name, (field_type + 1, request.field_index_params));
                Ok(())
            })?;
            Ok(self.updated(start))
        }

        async fn upsert(
            &self,
            request: Request<q::UpsertPoints>,
        ) -> Rpc<q::PointsOperationResponse> {
            let start = self.enter("Points/Upsert")?;
            let request = request.into_inner();
            if request.update_filter.is_some() || request.shard_key_selector.is_some() {
                return Err(unimplemented("Points/Upsert with an update filter or shard key"));
            }
            self.with_collection(&request.collection_name, |c| {
                // All or nothing: every point is checked before any is written.
                let points = request
                    .points
                    .into_iter()
                    .map(|point| stored_point(c, point))
                    .collect::<Result<Vec<_>, Status>>()?;
                c.points.extend(points);
                Ok(())
            })?;
            Ok(self.updated(start))
        }

        async fn delete(
            &self,
            request: Request<q::DeletePoints>,
        ) -> Rpc<q::PointsOperationResponse> {
            let start = self.enter("Points/Delete")?;
            let request = request.into_inner();
            if request.shard_key_selector.is_some() {
                return Err(unimplemented("Points/Delete with a shard key"));
            }
            let selector = request
                .points
                .and_then(|s| s.points_selector_one_of)
                .ok_or_else(|| Status::invalid_argument("a points selector is required"))?;
            self.with_collection(&request.collection_name, |c| {
                match selector {
                    PointsSelectorOneOf::Points(list) => {
                        for id in &list.ids {
                            c.points.remove(&Key::from_id(Some(id))?);
                        }
                    }
                    PointsSelectorOneOf::Filter(filter) => {
                        let mut doomed = Vec::new();
                        for (key, point) in &c.points {
                            if filter_matches(&filter, key, point)? {
                                doomed.push(key.clone());
                            }
                        }
                        for key in doomed {
                            c.points.remove(&key);
                        }
                    }
                }
                Ok(())
            })?;
            Ok(self.updated(start))
        }

        async fn count(&self, request: Request<q::CountPoints>) -> Rpc<q::CountResponse> {
            let start = self.enter("Points/Count")?;
            let request = request.into_inner();
            if request.shard_key_selector.is_some() {
                return Err(unimplemented("Points/Count with a shard key"));
            }
            let count = self.with_collection(&request.collection_name, |c| {
                let mut count = 0u64;
                for (key, point) in &c.points {
                    let matched = match &request.filter {
                        Some(filter) => filter_matches(filter, key, point)?,
                        None => true,
                    };
                    if matched {
                        count += 1;
                    }
                }
                Ok(count)
            })?;
            Ok(Response::new(q::CountResponse {
                result: Some(q::CountResult { count }),
                time: start.elapsed().as_secs_f64(),
                usage: None,
            }))
        }

        async fn query(&self, request: Request<q::QueryPoints>) -> Rpc<q::QueryResponse> {
            let start = self.enter("Points/Query")?;
            let request = request.into_inner();
            let result =
                self.with_collection(&request.collection_name, |c| run_query(c, &request))?;
            Ok(Response::new(q::QueryResponse {
                result,
                time: start.elapsed().as_secs_f64(),
                usage: None,
            }))
        }

        async fn query_batch(
            &self,
            request: Request<q::QueryBatchPoints>,
        ) -> Rpc<q::QueryBatchResponse> {
            let start = self.enter("Points/QueryBatch")?;
            let request = request.into_inner();
            let result = self.with_collection(&request.collection_name, |c| {
                request
                    .query_points
                    .iter()
                    .map(|query| Ok(q::BatchResult { result: run_query(c, query)? }))
                    .collect::<Result<Vec<_>, Status>>()
            })?;
            Ok(Response::new(q::QueryBatchResponse {
                result,
                time: start.elapsed().as_secs_f64(),
                usage: None,
            }))
        }
    }
    unimplemented {
        get = "Get" (GetPoints) -> GetResponse;
        update_vectors = "UpdateVectors" (UpdatePointVectors) -> PointsOperationResponse;
        delete_vectors = "DeleteVectors" (DeletePointVectors) -> PointsOperationResponse;
        set_payload = "SetPayload" (SetPayloadPoints) -> PointsOperationResponse;
        overwrite_payload = "OverwritePayload" (SetPayloadPoints) -> PointsOperationResponse;
        delete_payload = "DeletePayload" (DeletePayloadPoints) -> PointsOperationResponse;
        clear_payload = "ClearPayload" (ClearPayloadPoints) -> PointsOperationResponse;
        delete_field_index = "DeleteFieldIndex"
            (DeleteFieldIndexCollection) -> PointsOperationResponse;
        create_vector_name = "CreateVectorName"
            (CreateVectorNameRequest) -> PointsOperationResponse;
        delete_vector_name = "DeleteVectorName"
            (DeleteVectorNameRequest) -> PointsOperationResponse;
        search = "Search" (SearchPoints) -> SearchResponse;
        search_batch = "SearchBatch" (SearchBatchPoints) -> SearchBatchResponse;
        search_groups = "SearchGroups" (SearchPointGroups) -> SearchGroupsResponse;
        scroll = "Scroll" (ScrollPoints) -> ScrollResponse;
        recommend = "Recommend" (RecommendPoints) -> RecommendResponse;
        recommend_batch = "RecommendBatch" (RecommendBatchPoints) -> RecommendBatchResponse;
        recommend_groups = "RecommendGroups" (RecommendPointGroups) -> RecommendGroupsResponse;
        discover = "Discover" (DiscoverPoints) -> DiscoverResponse;
        discover_batch = "DiscoverBatch" (DiscoverBatchPoints) -> DiscoverBatchResponse;
        update_batch = "UpdateBatch" (UpdateBatchPoints) -> UpdateBatchResponse;
        query_groups = "QueryGroups" (QueryPointGroups) -> QueryGroupsResponse;
        facet = "Facet" (FacetCounts) -> FacetResponse;
        search_matrix_pairs = "SearchMatrixPairs" (SearchMatrixPoints) -> SearchMatrixPairsResponse;
        search_matrix_offsets = "SearchMatrixOffsets"
            (SearchMatrixPoints) -> SearchMatrixOffsetsResponse;
    }
}

fn new_collection(request: q::CreateCollection) -> Result<Collection, Status> {
    if request.collection_name.is_empty() {
        return Err(Status::invalid_argument("collection_name is required"));
    }
    let mut dense = HashMap::new();
    let mut add_dense = |name: &str, params: &q::VectorParams| -> Result<(), Status> {
        let distance = match Distance::try_from(params.distance) {
            Ok(d @ (Distance::Cosine | Distance::Dot)) => d,
            _ => return Err(unimplemented("distances other than Cosine and Dot")),
        };
        if params.size == 0 {
            return Err(Status::invalid_argument(format!(
                "vector `{name}`: size must be positive"
            )));
        }
        if params.multivector_config.is_some() {
            return Err(unimplemented("multivectors"));
        }
        dense.insert(name.to_string(), (params.size as usize, distance));
        Ok(())
    };
    match request
        .vectors_config
        .as_ref()
        .and_then(|c| c.config.as_ref())
    {
        Some(VectorsConfigKind::Params(params)) => add_dense("", params)?,
        Some(VectorsConfigKind::ParamsMap(map)) => {
            for (name, params) in &map.map {
                add_dense(name, params)?;
            }
        }
        None => {}
    }
    let mut sparse = HashMap::new();
    for (name, params) in request.sparse_vectors_config.iter().flat_map(|c| &c.map) {
        if dense.contains_key(name) {
            return Err(Status::invalid_argument(format!(
                "vector name `{name}` is both dense and sparse"
            )));
        }
        sparse.insert(name.clone(), params.modifier == Some(Modifier::Idf as i32));
    }
    Ok(Collection {
        vectors_config: request.vectors_config,
        sparse_vectors_config: request.sparse_vectors_config,
        dense,
        sparse,
        payload_schema: BTreeMap::new(),
        points: BTreeMap::new(),
    })
}

fn collection_info(c: &Collection) -> q::CollectionInfo {
    let payload_schema = c
        .payload_schema
        .iter()
        .map(|(field, (data_type, params))| {
            let points = c
                .points
                .values()
                .filter(|p| p.payload.contains_key(field))
                .count() as u64;
            let info = PayloadSchemaInfo {
                data_type: *data_type,
                params: params.clone(),
                points: Some(points),
            };
            (field.clone(), info)
        })
        .collect();
    let params = q::CollectionParams {
        shard_number: 1,
        vectors_config: c.vectors_config.clone(),
        replication_factor: Some(1),
        write_consistency_factor: Some(1),
        sparse_vectors_config: c.sparse_vectors_config.clone(),
        ..Default::default()
    };
    q::CollectionInfo {
        status: q::CollectionStatus::Green as i32,
        optimizer_status: Some(q::OptimizerStatus {
            ok: true,
            error: String::new(),
        }),
        segments_count: 1,
        config: Some(q::CollectionConfig {
            params: Some(params),
            ..Default::default()
        }),
        payload_schema,
        points_count: Some(c.points.len() as u64),
        indexed_vectors_count: Some(0),
        ..Default::default()
    }
}

enum Input {
    Dense(Vec<f32>),
    Sparse(Vec<(u32, f32)>),
}

/// A vector as sent: the `vector` oneof (clients since 1.16), or the deprecated `data` /
/// `indices` fields older clients fill.
#[allow(deprecated)]
fn input_of_vector(v: q::Vector) -> Result<Input, Status> {
    match v.vector {
        Some(vector::Vector::Dense(d)) => Ok(Input::Dense(d.data)),
        Some(vector::Vector::Sparse(s)) => sparse_input(s.indices, s.values),
        Some(_) => Err(unimplemented("multi-dense vectors and inference inputs")),
        None => match v.indices {
            Some(indices) => sparse_input(indices.data, v.data),
            None => Ok(Input::Dense(v.data)),
        },
    }
}

fn sparse_input(indices: Vec<u32>, values: Vec<f32>) -> Result<Input, Status> {
    sparse_pairs(indices, values).map(Input::Sparse)
}

/// `(index, value)` pairs sorted by index, checked as Qdrant checks them.
fn sparse_pairs(indices: Vec<u32>, values: Vec<f32>) -> Result<Vec<(u32, f32)>, Status> {
    if indices.len() != values.len() {
        return Err(Status::invalid_argument(
            "a sparse vector's indices and values differ in length",
        ));
    }
    let mut pairs: Vec<(u32, f32)> = indices.into_iter().zip(values).collect();
    pairs.sort_by_key(|(i, _)| *i);
    if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(Status::invalid_argument(
            "a sparse vector's indices must be unique",
        ));
    }
    Ok(pairs)
}

fn stored_point(c: &Collection, point: q::PointStruct) -> Result<(Key, Stored), Status> {
    let key = Key::from_id(point.id.as_ref())?;
    let named: Vec<(String, q::Vector)> = match point.vectors.and_then(|v| v.vectors_options) {
        Some(VectorsOptions::Vector(v)) => vec![(String::new(), v)],
        Some(VectorsOptions::Vectors(named)) => named.vectors.into_iter().collect(),
        None => Vec::new(),
    };
    let mut stored = Stored {
        payload: point.payload,
        ..Stored::default()
    };
    for (name, v) in named {
        match (input_of_vector(v)?, c.dense.get(&name), c.sparse.get(&name)) {
            (Input::Dense(data), Some((size, _)), _) => {
                if data.len() != *size {
                    return Err(Status::invalid_argument(format!(
                        "Wrong input: Vector dimension error: expected dim: {size}, got {}",
                        data.len()
                    )));
                }
                stored.dense.insert(name, data);
            }
            (Input::Sparse(pairs), _, Some(_)) => {
                stored.sparse.insert(name, pairs);
            }
            (_, None, None) => {
                return Err(Status::invalid_argument(format!(
                    "Wrong input: Not existing vector name error: {name}"
                )))
            }
            _ => {
                return Err(Status::invalid_argument(format!(
                    "Wrong input: vector `{name}` is of the other kind (dense / sparse)"
                )))
            }
        }
    }
    Ok((key, stored))
}

// ----- Filters -----

fn filter_matches(filter: &Filter, key: &Key, point: &Stored) -> Result<bool, Status> {
    if filter.min_should.is_some() {
        return Err(unimplemented("min_should filters"));
    }
    for condition in &filter.must {
        if !condition_matches(condition, key, point)? {
            return Ok(false);
        }
    }
    for condition in &filter.must_not {
        if condition_matches(condition, key, point)? {
            return Ok(false);
        }
    }
    if filter.should.is_empty() {
        return Ok(true);
    }
    for condition in &filter.should {
        if condition_matches(condition, key, point)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn condition_matches(condition: &Condition, key: &Key, point: &Stored) -> Result<bool, Status> {
    match condition.condition_one_of.as_ref() {
        Some(ConditionOneOf::Field(field)) => field_matches(field, &point.payload),
        Some(ConditionOneOf::HasId(has)) => {
            for id in &has.has_id {
                if Key::from_id(Some(id))? == *key {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Some(ConditionOneOf::Filter(inner)) => filter_matches(inner, key, point),
        Some(_) => Err(unimplemented(
            "conditions other than field, has-id and nested filters",
        )),
        None => Err(Status::invalid_argument("an empty condition")),
    }
}

/// A field condition on a top-level payload key (no dotted paths); an array value matches
/// when one of its elements does, as in Qdrant.
fn field_matches(field: &FieldCondition, payload: &HashMap<String, Value>) -> Result<bool, Status> {
    if field.key.contains('.') || field.key.contains('[') {
        return Err(unimplemented("nested payload keys"));
    }
    let unsupported = field.geo_bounding_box.is_some()
        || field.geo_radius.is_some()
        || field.geo_polygon.is_some()
        || field.values_count.is_some()
        || field.datetime_range.is_some()
        || field.is_empty.is_some()
        || field.is_null.is_some();
    if unsupported || (field.r#match.is_none() && field.range.is_none()) {
        return Err(unimplemented("field conditions other than match and range"));
    }
    let values: Vec<&Kind> = match payload.get(&field.key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::ListValue(list)) => list.values.iter().filter_map(|v| v.kind.as_ref()).collect(),
        Some(kind) => vec![kind],
        None => Vec::new(),
    };
    if let Some(m) = &field.r#match {
        let wanted = m
            .match_value
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("an empty match"))?;
        let one = |kind: &Kind| -> Result<bool, Status> {
            Ok(match (wanted, kind) {
                (MatchValue::Keyword(w), Kind::StringValue(v)) => w == v,
                (MatchValue::Integer(w), Kind::IntegerValue(v)) => w == v,
                (MatchValue::Boolean(w), Kind::BoolValue(v)) => w == v,
                (MatchValue::Keywords(w), Kind::StringValue(v)) => w.strings.contains(v),
                (MatchValue::Integers(w), Kind::IntegerValue(v)) => w.integers.contains(v),
                (
                    MatchValue::Keyword(_)
                    | MatchValue::Integer(_)
                    | MatchValue::Boolean(_)
                    | MatchValue::Keywords(_)
                    | MatchValue::Integers(_),
                    _,
                ) => false,
                _ => return Err(unimplemented("text, phrase and except matches")),
            })
        };
        let mut any = false;
        for kind in &values {
            any |= one(kind)?;
        }
        if !any {
            return Ok(false);
        }
    }
    if let Some(range) = &field.range {
        let within = |x: f64| {
            range.lt.is_none_or(|b| x < b)
                && range.gt.is_none_or(|b| x > b)
                && range.lte.is_none_or(|b| x <= b)
                && range.gte.is_none_or(|b| x >= b)
        };
        let any = values.iter().any(|kind| match kind {
            Kind::IntegerValue(v) => within(*v as f64),
            Kind::DoubleValue(v) => within(*v),
            _ => false,
        });
        if !any {
            return Ok(false);
        }
    }
    Ok(true)
}

// ----- Queries -----

/// What a query and a prefetch share.
struct Plan<'a> {
    prefetch: &'a [PrefetchQuery],
    query: Option<&'a Query>,
    using: Option<&'a str>,
    filter: Option<&'a Filter>,
    score_threshold: Option<f32>,
    limit: Option<u64>,
}

fn run_query(c: &Collection, request: &q::QueryPoints) -> Result<Vec<q::ScoredPoint>, Status> {
    if request.lookup_from.is_some() || request.shard_key_selector.is_some() {
        return Err(unimplemented("lookup_from and shard keys"));
    }
    let wants_vectors = match request
        .with_vectors
        .as_ref()
        .and_then(|w| w.selector_options.as_ref())
    {
        None | Some(VectorsSelectorOptions::Enable(false)) => false,
        Some(_) => true,
    };
    if wants_vectors {
        return Err(unimplemented("with_vectors"));
    }
    let plan = Plan {
        prefetch: &request.prefetch,
        query: request.query.as_ref(),
        using: request.using.as_deref(),
        filter: request.filter.as_ref(),
        score_threshold: request.score_threshold,
        limit: None,
    };
    let offset = request.offset.unwrap_or(0) as usize;
    let limit = request.limit.unwrap_or(DEFAULT_LIMIT) as usize;
    let ranked = run_plan(c, &plan, &[])?;
    let selector = request
        .with_payload
        .as_ref()
        .and_then(|w| w.selector_options.as_ref());
    Ok(ranked
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|(key, score)| {
            let point = &c.points[&key];
            q::ScoredPoint {
                id: Some(key.to_id()),
                payload: select_payload(&point.payload, selector),
                score,
                ..Default::default()
            }
        })
        .collect())
}

fn select_payload(
    payload: &HashMap<String, Value>,
    selector: Option<&SelectorOptions>,
) -> HashMap<String, Value> {
    match selector {
        None | Some(SelectorOptions::Enable(false)) => HashMap::new(),
        Some(SelectorOptions::Enable(true)) => payload.clone(),
        Some(SelectorOptions::Include(include)) => payload
            .iter()
            .filter(|(k, _)| include.fields.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Some(SelectorOptions::Exclude(exclude)) => payload
            .iter()
            .filter(|(k, _)| !exclude.fields.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// The plan's points, best first: every one of them when `plan.limit` is `None` (the top
/// level applies offset and limit itself), else at most that many (a prefetch, default 10).
/// `outer` are the enclosing queries' filters, which a prefetch is filtered by as well.
fn run_plan(c: &Collection, plan: &Plan<'_>, outer: &[&Filter]) -> Result<Vec<(Key, f32)>, Status> {
    let mut filters: Vec<&Filter> = outer.to_vec();
    filters.extend(plan.filter);
    let mut scored: Vec<(Key, f32)> = if plan.prefetch.is_empty() {
        let variant = plan.query.and_then(|q| q.variant.as_ref());
        let Some(query::Variant::Nearest(input)) = variant else {
            return Err(match variant {
                Some(query::Variant::Fusion(_) | query::Variant::Rrf(_)) => {
                    Status::invalid_argument("a fusion query needs prefetches")
                }
                _ => unimplemented("queries other than nearest and RRF fusion"),
            });
        };
        let mut candidates = Vec::new();
        for (key, point) in &c.points {
            if all_match(&filters, key, point)? {
                candidates.push(key);
            }
        }
        nearest(c, input, plan.using, candidates)?
    } else {
        let mut sides = Vec::with_capacity(plan.prefetch.len());
        for prefetch in plan.prefetch {
            let inner = Plan {
                prefetch: &prefetch.prefetch,
                query: prefetch.query.as_ref(),
                using: prefetch.using.as_deref(),
                filter: prefetch.filter.as_ref(),
                score_threshold: prefetch.score_threshold,
                limit: Some(prefetch.limit.unwrap_or(DEFAULT_LIMIT)),
            };
            if prefetch.lookup_from.is_some() {
                return Err(unimplemented("lookup_from"));
            }
            sides.push(run_plan(c, &inner, &filters)?);
        }
        match plan.query.and_then(|q| q.variant.as_ref()) {
            Some(query::Variant::Rrf(rrf)) => {
                rrf_fuse(&sides, rrf.k.unwrap_or(DEFAULT_RRF_K), &rrf.weights)?
            }
            Some(query::Variant::Fusion(f)) if *f == Fusion::Rrf as i32 => {
                rrf_fuse(&sides, DEFAULT_RRF_K, &[])?
            }
            Some(query::Variant::Nearest(input)) => {
                // Re-scoring the prefetched points.
                let mut seen = HashSet::new();
                let candidates: Vec<&Key> = sides
                    .iter()
                    .flatten()
                    .map(|(key, _)| key)
                    .filter(|key| seen.insert(*key))
                    .collect();
                nearest(c, input, plan.using, candidates)?
            }
            _ => {
                return Err(unimplemented(
                    "over prefetches, queries other than RRF and nearest",
                ))
            }
        }
    };
    sort(&mut scored);
    if let Some(threshold) = plan.score_threshold {
        scored.retain(|(_, score)| *score >= threshold);
    }
    if let Some(limit) = plan.limit {
        scored.truncate(limit as usize);
    }
    Ok(scored)
}

fn all_match(filters: &[&Filter], key: &Key, point: &Stored) -> Result<bool, Status> {
    for filter in filters {
        if !filter_matches(filter, key, point)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Best first; equal scores by id, so answers are deterministic.
fn sort(scored: &mut [(Key, f32)]) {
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
}

/// Σ weight / (k + rank) over the sides a point is in, ranks from 0.
fn rrf_fuse(sides: &[Vec<(Key, f32)>], k: u32, weights: &[f32]) -> Result<Vec<(Key, f32)>, Status> {
    if !weights.is_empty() && weights.len() != sides.len() {
        return Err(Status::invalid_argument(
            "RRF weights must be as many as the prefetches",
        ));
    }
    let mut fused: HashMap<Key, f32> = HashMap::new();
    for (i, side) in sides.iter().enumerate() {
        let weight = weights.get(i).copied().unwrap_or(1.0);
        for (rank, (key, _)) in side.iter().enumerate() {
            *fused.entry(key.clone()).or_default() += weight / (k as f32 + rank as f32);
        }
    }
    Ok(fused.into_iter().collect())
}

/// Scores `candidates` against a nearest query on vector `using` (`""` when unnamed); points
/// without that vector, and for a sparse query points sharing no index with it, are left out.
fn nearest(
    c: &Collection,
    input: &q::VectorInput,
    using: Option<&str>,
    candidates: Vec<&Key>,
) -> Result<Vec<(Key, f32)>, Status> {
    let name = using.unwrap_or("");
    match input.variant.as_ref() {
        Some(vector_input::Variant::Dense(query)) => {
            let (size, distance) = c.dense.get(name).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "Wrong input: Not existing dense vector name: `{name}`"
                ))
            })?;
            if query.data.len() != *size {
                return Err(Status::invalid_argument(format!(
                    "Wrong input: Vector dimension error: expected dim: {size}, got {}",
                    query.data.len()
                )));
            }
            Ok(candidates
                .into_iter()
                .filter_map(|key| {
                    let stored = c.points[key].dense.get(name)?;
                    Some((key.clone(), dense_score(*distance, &query.data, stored)))
                })
                .collect())
        }
        Some(vector_input::Variant::Sparse(query)) => {
            let idf = *c.sparse.get(name).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "Wrong input: Not existing sparse vector name: `{name}`"
                ))
            })?;
            let mut query = sparse_pairs(query.indices.clone(), query.values.clone())?;
            if idf {
                let with_vector: Vec<&Vec<(u32, f32)>> = c
                    .points
                    .values()
                    .filter_map(|p| p.sparse.get(name))
                    .collect();
                let total = with_vector.len() as f32;
                for (index, weight) in &mut query {
                    let having = with_vector
                        .iter()
                        .filter(|v| v.binary_search_by_key(index, |(i, _)| *i).is_ok())
                        .count() as f32;
                    *weight *= (1.0 + (total - having + 0.5) / (having + 0.5)).ln();
                }
            }
            Ok(candidates
                .into_iter()
                .filter_map(|key| {
                    let stored = c.points[key].sparse.get(name)?;
                    sparse_score(&query, stored).map(|score| (key.clone(), score))
                })
                .collect())
        }
        _ => Err(unimplemented(
            "nearest queries other than by a dense or sparse vector",
        )),
    }
}

fn dense_score(distance: Distance, a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    match distance {
        Distance::Cosine => {
            let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            let (na, nb) = (norm(a), norm(b));
            if na == 0.0 || nb == 0.0 {
                0.0
            } else {
                dot / (na * nb)
            }
        }
        _ => dot,
    }
}

/// The dot product over shared indices (both sorted); `None` when none is shared.
fn sparse_score(a: &[(u32, f32)], b: &[(u32, f32)]) -> Option<f32> {
    let (mut i, mut j, mut score, mut shared) = (0, 0, 0.0f32, false);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                score += a[i].1 * b[j].1;
                shared = true;
                i += 1;
                j += 1;
            }
        }
    }
    shared.then_some(score)
}

/// The fake checked against engram's real Qdrant adapter — a check of the fake, not of the
/// adapter against Qdrant.
#[cfg(test)]
mod tests {
    // Everything the test uses is declared inside it: the module is also compiled into the
    // benchmarks (`#[path]`), with `cfg(test)` on but without the test harness, where
    // the test function is left out and module-level imports would be unused.
    #[tokio::test]
    async fn the_fake_qdrant_serves_the_adapter() {
        use std::sync::Arc;

        use engram::brain::{AddedDocument, BrainId, BrainName, NewDocument, TenantKey};
        use engram::config::{StoreConfig, StoreUrl};
        use engram::index::{
            DocumentId, Index, IndexError, IndexedDocument, QdrantIndex, QdrantOptions, SearchQuery,
        };
        use engram::ingest::chunk::{keyword_terms, ChunkDraft};
        use engram::store::{self, Store};
        use qdrant_client::qdrant::{
            CreateCollectionBuilder, Modifier, NamedVectors, PointId, PointStruct, Query,
            QueryPointsBuilder, SparseVectorParamsBuilder, SparseVectorsConfigBuilder,
            UpsertPointsBuilder, Vector,
        };
        use qdrant_client::Payload;

        const DIMENSIONS: usize = 64;
        const COLLECTION: &str = "engram_chunks";

        /// A deterministic bag-of-words embedding.
        fn embed(text: &str) -> Vec<f32> {
            let mut vector = vec![0.0f32; DIMENSIONS];
            for term in keyword_terms(text) {
                let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
                for byte in term.bytes() {
                    hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
                }
                vector[(hash % DIMENSIONS as u64) as usize] += 1.0;
            }
            vector
        }

        fn chunk(ordinal: u32, heading: Option<&str>, text: &str) -> ChunkDraft {
            ChunkDraft {
                ordinal,
                page: Some(ordinal + 1),
                heading: heading.map(str::to_string),
                text: text.to_string(),
                tokens: 0,
            }
        }

        async fn brain(store: &Arc<dyn Store>, name: &str) -> BrainId {
            let tenant = store
                .ensure_tenant(&TenantKey::local())
                .await
                .expect("tenant");
            let name = BrainName::parse(name).expect("brain name");
            store.create_brain(tenant, &name).await.expect("brain").id
        }

        async fn document(store: &Arc<dyn Store>, brain: BrainId, file_name: &str) -> DocumentId {
            let added = store
                .add_document(&NewDocument {
                    brain,
                    sha256: format!("sha-of-{file_name}"),
                    file_name: file_name.to_string(),
                    source_link: Some(format!("https://chat.example/{file_name}")),
                })
                .await
                .expect("add document");
            match added {
                AddedDocument::Pending(document) | AddedDocument::Known(document) => document.id,
            }
        }

        async fn index(
            index: &QdrantIndex,
            brain: BrainId,
            document: DocumentId,
            chunks: &[ChunkDraft],
        ) {
            let vectors: Vec<Vec<f32>> = chunks.iter().map(|c| embed(&c.text)).collect();
            index
                .index_document(IndexedDocument {
                    brain,
                    document,
                    pages: 1,
                    ocr_pages: 0,
                    chunks,
                    vectors: Some(&vectors),
                })
                .await
                .expect("index document");
        }

        fn keyword(text: &str) -> SearchQuery {
            SearchQuery {
                text: text.to_string(),
                vector: None,
                limit: 5,
            }
        }

        fn hybrid(text: &str) -> SearchQuery {
            SearchQuery {
                vector: Some(embed(text)),
                ..keyword(text)
            }
        }

        fn options(url: &str, dimensions: usize) -> QdrantOptions {
            QdrantOptions {
                url: url.to_string(),
                api_key: engram::config::Secret::default(),
                collection: COLLECTION.to_string(),
                dimensions: Some(dimensions),
            }
        }

        let fake = super::start().await;
        assert_eq!(fake.url, format!("http://{}", fake.addr));
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store::open(&StoreConfig {
            url: StoreUrl::new(format!("sqlite://{}/engram.db", dir.path().display())),
            max_connections: 4,
            busy_timeout_ms: 5000,
        })
        .await
        .expect("open SQLite store");
        let qdrant = QdrantIndex::open(options(&fake.url, DIMENSIONS), store.clone())
            .await
            .expect("open the adapter against the fake");
        qdrant.ping().await.expect("ping");
        assert_eq!(fake.collections(), vec![COLLECTION.to_string()]);
        assert_eq!(fake.calls_to("Points/CreateFieldIndex"), 3);

        // A second process opening the same collection: it exists, with its indexes and width.
        let again = QdrantIndex::open(options(&fake.url, DIMENSIONS), store.clone())
            .await
            .expect("reopen");
        assert_eq!(fake.calls_to("Collections/Create"), 1);
        assert_eq!(fake.calls_to("Points/CreateFieldIndex"), 3);
        let wrong = QdrantIndex::open(options(&fake.url, DIMENSIONS + 1), store.clone()).await;
        assert!(
            matches!(wrong, Err(IndexError::DimensionMismatch { expected, got })
                if expected == DIMENSIONS && got == DIMENSIONS + 1),
            "{wrong:?}"
        );

        let alpha = brain(&store, "alpha").await;
        let beta = brain(&store, "beta").await;
        let handbook = document(&store, alpha, "handbook.pdf").await;
        let memo = document(&store, beta, "memo.md").await;
        let handbook_chunks = vec![
            chunk(
                0,
                Some("Leave"),
                "Employees get 25 days of paid holiday each year.",
            ),
            chunk(
                1,
                Some("Leave > Sick"),
                "Report sick leave to your manager before 10 am.",
            ),
            chunk(
                2,
                Some("Expenses"),
                "Submit receipts within 30 days to get a refund.",
            ),
        ];
        let memo_chunks = vec![
            chunk(
                0,
                None,
                "Sick leave in the warehouse is reported to the shift lead.",
            ),
            chunk(1, None, "Forklift keys hang by the loading dock."),
        ];
        index(&qdrant, alpha, handbook, &handbook_chunks).await;
        index(&again, beta, memo, &memo_chunks).await;
        assert_eq!(fake.points(COLLECTION), 5);
        assert_eq!(fake.points_for_document(COLLECTION, handbook.0), 3);
        assert_eq!(fake.points_for_document(COLLECTION, memo.0), 2);
        assert_eq!(
            qdrant.count_points(alpha, handbook).await.expect("count"),
            3
        );
        // The brain is part of every filter: another brain's id finds nothing.
        assert_eq!(qdrant.count_points(beta, handbook).await.expect("count"), 0);

        // Keyword and hybrid searches find the brain's own chunk first, never the other brain's.
        for query in [
            keyword("how do I report sick leave?"),
            hybrid("report sick leave"),
        ] {
            let hits = qdrant.search(alpha, &query).await.expect("search alpha");
            assert!(!hits.is_empty(), "{query:?}");
            assert!(hits.iter().all(|h| h.document_id == handbook.0), "{hits:?}");
            assert!(hits[0].text.contains("Report sick leave"), "{hits:?}");
            assert_eq!(hits[0].file_name, "handbook.pdf");
            assert_eq!(hits[0].page, Some(2));
            assert_eq!(hits[0].heading.as_deref(), Some("Leave > Sick"));
            assert_eq!(hits[0].keyword_rank, Some(1));
            let hits = qdrant.search(beta, &query).await.expect("search beta");
            assert!(!hits.is_empty(), "{query:?}");
            assert!(hits.iter().all(|h| h.document_id == memo.0), "{hits:?}");
            assert!(hits[0].text.contains("warehouse"), "{hits:?}");
        }
        let hits = qdrant
            .search(alpha, &hybrid("refund receipts"))
            .await
            .expect("search");
        assert!(hits[0].text.contains("receipts"), "{hits:?}");
        assert_eq!(
            (hits[0].keyword_rank, hits[0].vector_rank),
            (Some(1), Some(1))
        );
        // RRF as Qdrant scores it with the adapter's k = 61: first on both sides, 2 / 61.
        assert!((hits[0].score - 2.0 / 61.0).abs() < 1e-6, "{hits:?}");
        assert!(qdrant
            .search(alpha, &keyword("forklift"))
            .await
            .expect("search")
            .is_empty());

        // Re-indexing the same document is idempotent; a shorter version drops the rest.
        index(&qdrant, alpha, handbook, &handbook_chunks).await;
        assert_eq!(fake.points_for_document(COLLECTION, handbook.0), 3);
        assert_eq!(fake.points(COLLECTION), 5);
        index(&qdrant, alpha, handbook, &handbook_chunks[..2]).await;
        assert_eq!(fake.points_for_document(COLLECTION, handbook.0), 2);
        assert!(qdrant
            .search(alpha, &keyword("refund"))
            .await
            .expect("search")
            .is_empty());

        // Forgetting a document removes its points and nothing of the other brain's.
        qdrant
            .forget_document(alpha, handbook)
            .await
            .expect("forget");
        assert_eq!(fake.points_for_document(COLLECTION, handbook.0), 0);
        assert_eq!(fake.points_for_document(COLLECTION, memo.0), 2);
        assert!(qdrant
            .search(alpha, &hybrid("sick leave"))
            .await
            .expect("search")
            .is_empty());
        assert_eq!(
            qdrant
                .search(beta, &hybrid("sick leave"))
                .await
                .expect("search")
                .len(),
            2
        );

        // Down: the adapter sees a transient error; back up, it works again.
        fake.set_down(true);
        let error = qdrant
            .search(beta, &keyword("sick"))
            .await
            .expect_err("down");
        assert!(error.is_transient(), "{error}");
        assert!(qdrant.ping().await.expect_err("down").is_transient());
        fake.set_down(false);
        qdrant.ping().await.expect("ping after the fake is back");
        // Searches go out as one batch.
        assert!(fake.calls().iter().any(|c| c == "Points/QueryBatch"));
        assert_eq!(fake.calls_to("Points/Query"), 0);

        // Sparse scores are IDF-weighted dot products over the collection, as Qdrant's
        // modifier makes them: N = 3 points, term 1 in two of them, term 2 in one.
        let client = qdrant_client::Qdrant::from_url(&fake.url)
            .skip_compatibility_check()
            .build()
            .expect("client");
        let mut sparse = SparseVectorsConfigBuilder::default();
        sparse.add_named_vector_params(
            "k",
            SparseVectorParamsBuilder::default().modifier(Modifier::Idf),
        );
        client
            .create_collection(CreateCollectionBuilder::new("idf").sparse_vectors_config(sparse))
            .await
            .expect("create");
        let point = |id: u64, indices: Vec<u32>| {
            let values = vec![1.0; indices.len()];
            let vectors =
                NamedVectors::default().add_vector("k", Vector::new_sparse(indices, values));
            PointStruct::new(id, vectors, Payload::new())
        };
        let points = vec![point(1, vec![1]), point(2, vec![1, 2]), point(3, vec![3])];
        client
            .upsert_points(UpsertPointsBuilder::new("idf", points))
            .await
            .expect("upsert");
        let found = client
            .query(
                QueryPointsBuilder::new("idf")
                    .query(Query::from(vec![(1, 1.0), (2, 1.0)]))
                    .using("k"),
            )
            .await
            .expect("query")
            .result;
        let idf = |n: f32| (1.0 + (3.0 - n + 0.5) / (n + 0.5)).ln();
        let scores: Vec<(PointId, f32)> = found
            .into_iter()
            .map(|p| (p.id.expect("id"), p.score))
            .collect();
        assert_eq!(scores.len(), 2, "{scores:?}");
        assert_eq!(scores[0].0, PointId::from(2));
        assert!(
            (scores[0].1 - (idf(2.0) + idf(1.0))).abs() < 1e-5,
            "{scores:?}"
        );
        assert_eq!(scores[1].0, PointId::from(1));
        assert!((scores[1].1 - idf(2.0)).abs() < 1e-5, "{scores:?}");

        // What the adapter does not call is refused, not faked, and recorded by its name.
        let error = client
            .list_collections()
            .await
            .expect_err("not implemented");
        assert!(
            matches!(&error, qdrant_client::QdrantError::ResponseError { status }
                if status.code() == tonic::Code::Unimplemented),
            "{error}"
        );
        assert_eq!(fake.calls_to("Collections/List"), 1);

        // Stopped: the port closes and the adapter sees Qdrant unreachable.
        fake.stop();
        let mut error = None;
        for _ in 0..100 {
            match qdrant.ping().await {
                Ok(()) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let error = error.expect("the stopped fake still answers");
        assert!(error.is_transient(), "{error}");
    }
}
