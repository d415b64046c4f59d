//! The local embedding model (`embeddings.local_model`): a BERT sentence encoder run in this
//! process with candle — WordPiece tokens, the encoder, mean pooling over the text's tokens and
//! L2 normalisation, as sentence-transformers does for all-MiniLM-L6-v2 — on one dedicated
//! thread per model directory, shared by the whole process, where questions go ahead of
//! ingestion's batches. Nothing leaves the machine.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
use tokio::sync::{oneshot, Semaphore};

/// Texts per forward pass when ingesting; a question waits for at most one such pass. Four
/// texts of 256 tokens keep the attention scores near 12 MB a layer.
pub const BATCH: usize = 4;
/// Questions and batches queued for the model at most; more wait (asynchronously) for a place.
const MAX_QUEUED: usize = 64;
/// Tokens per text when the model directory does not say (`sentence_bert_config.json`).
const DEFAULT_MAX_TOKENS: usize = 256;

/// Why the local model cannot embed: a sentence for the log and `engram doctor`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ModelError(pub String);

fn model_error(context: &str) -> impl Fn(candle_core::Error) -> ModelError + '_ {
    move |error| ModelError(format!("{context}: {error}"))
}

/// The fields of a BERT `config.json` the encoder needs.
#[derive(Debug, Clone, Deserialize)]
struct BertConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}

fn default_type_vocab() -> usize {
    2
}

fn default_eps() -> f64 {
    1e-12
}

/// `sentence_bert_config.json`: how many tokens of a text sentence-transformers reads.
#[derive(Debug, Deserialize)]
struct SentenceConfig {
    max_seq_length: Option<usize>,
}

/// The activation between a layer's two feed-forward projections.
#[derive(Debug, Clone, Copy)]
enum Activation {
    /// The exact GELU (`gelu` in transformers).
    Gelu,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
}

impl BertConfig {
    fn read(dir: &Path) -> Result<(Self, Activation), ModelError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|error| ModelError(format!("cannot read {}: {error}", path.display())))?;
        let config: BertConfig = serde_json::from_str(&text).map_err(|error| {
            ModelError(format!("{} is not a BERT config: {error}", path.display()))
        })?;
        if config
            .model_type
            .as_deref()
            .is_some_and(|kind| !matches!(kind, "bert" | "roberta" | "xlm-roberta"))
        {
            return Err(ModelError(format!(
                "{}: model_type {:?} is not a BERT encoder",
                path.display(),
                config.model_type.as_deref().unwrap_or_default()
            )));
        }
        if config
            .position_embedding_type
            .as_deref()
            .is_some_and(|kind| kind != "absolute")
        {
            return Err(ModelError(format!(
                "{}: only absolute position embeddings are supported",
                path.display()
            )));
        }
        let activation = match config.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            other => {
                return Err(ModelError(format!(
                    "{}: activation {other:?} is not supported",
                    path.display()
                )))
            }
        };
        if config.hidden_size == 0
            || config.num_attention_heads == 0
            || config.hidden_size % config.num_attention_heads != 0
        {
            return Err(ModelError(format!(
                "{}: hidden_size {} is not a multiple of num_attention_heads {}",
                path.display(),
                config.hidden_size,
                config.num_attention_heads
            )));
        }
        Ok((config, activation))
    }
}

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

/// The encoder's weights and shape.
struct Bert {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    heads: usize,
    head_size: usize,
    activation: Activation,
}

impl Bert {
    fn load(
        vb: VarBuilder,
        config: &BertConfig,
        activation: Activation,
    ) -> candle_core::Result<Self> {
        // Checkpoints saved from `BertForMaskedLM` and the like prefix every name with `bert.`.
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let hidden = config.hidden_size;
        let eps = config.layer_norm_eps;
        let e = vb.pp("embeddings");
        let embeddings = Embeddings {
            word: candle_nn::embedding(config.vocab_size, hidden, e.pp("word_embeddings"))?,
            position: candle_nn::embedding(
                config.max_position_embeddings,
                hidden,
                e.pp("position_embeddings"),
            )?,
            token_type: candle_nn::embedding(
                config.type_vocab_size,
                hidden,
                e.pp("token_type_embeddings"),
            )?,
            norm: candle_nn::layer_norm(hidden, eps, e.pp("LayerNorm"))?,
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for n in 0..config.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{n}"));
            let attention = l.pp("attention");
            layers.push(Layer {
                query: candle_nn::linear(hidden, hidden, attention.pp("self.query"))?,
                key: candle_nn::linear(hidden, hidden, attention.pp("self.key"))?,
                value: candle_nn::linear(hidden, hidden, attention.pp("self.value"))?,
                attention_out: candle_nn::linear(hidden, hidden, attention.pp("output.dense"))?,
                attention_norm: candle_nn::layer_norm(
                    hidden,
                    eps,
                    attention.pp("output.LayerNorm"),
                )?,
                intermediate: candle_nn::linear(
                    hidden,
                    config.intermediate_size,
                    l.pp("intermediate.dense"),
                )?,
                output: candle_nn::linear(config.intermediate_size, hidden, l.pp("output.dense"))?,
                output_norm: candle_nn::layer_norm(hidden, eps, l.pp("output.LayerNorm"))?,
            });
        }
        Ok(Self {
            embeddings,
            layers,
            heads: config.num_attention_heads,
            head_size: hidden / config.num_attention_heads,
            activation,
        })
    }

    /// Sentence vectors for a padded batch: `ids` and `mask` are (texts, tokens); the mask is
    /// 1.0 for a text's tokens and 0.0 for padding. Mean of the last layer over each text's
    /// tokens, L2-normalised.
    fn embed(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (texts, tokens) = ids.dims2()?;
        let device = ids.device();
        let positions = Tensor::arange(0u32, tokens as u32, device)?.unsqueeze(0)?;
        let types = ids.zeros_like()?;
        let e = &self.embeddings;
        let x = e
            .word
            .forward(ids)?
            .add(&e.token_type.forward(&types)?)?
            .broadcast_add(&e.position.forward(&positions)?)?;
        let mut x = e.norm.forward(&x)?;
        // Padding gets a large negative score before the softmax, so no token attends to it.
        let bias = mask.affine(1e9, -1e9)?.reshape((texts, 1, 1, tokens))?;
        let scale = 1.0 / (self.head_size as f64).sqrt();
        let hidden = self.heads * self.head_size;
        let split = |t: Tensor| -> candle_core::Result<Tensor> {
            t.reshape((texts, tokens, self.heads, self.head_size))?
                .transpose(1, 2)?
                .contiguous()
        };
        for layer in &self.layers {
            let q = split(layer.query.forward(&x)?)?;
            let k = split(layer.key.forward(&x)?)?;
            let v = split(layer.value.forward(&x)?)?;
            let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&bias)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let context = probs
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((texts, tokens, hidden))?;
            let attended = layer
                .attention_norm
                .forward(&layer.attention_out.forward(&context)?.add(&x)?)?;
            let inner = layer.intermediate.forward(&attended)?;
            let inner = match self.activation {
                Activation::Gelu => inner.gelu_erf()?,
                Activation::GeluTanh => inner.gelu()?,
            };
            x = layer
                .output_norm
                .forward(&layer.output.forward(&inner)?.add(&attended)?)?;
        }
        let weights = mask.unsqueeze(2)?;
        let summed = x.broadcast_mul(&weights)?.sum(1)?;
        let counts = mask.sum_keepdim(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        mean.broadcast_div(&norms)
    }
}

/// The tokenizer and encoder, owned by the model's thread.
struct Loaded {
    tokenizer: Tokenizer,
    bert: Bert,
}

impl Loaded {
    fn load(dir: &Path, config: &BertConfig, activation: Activation) -> Result<Self, ModelError> {
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|error| {
            ModelError(format!(
                "cannot read {}: {error}",
                dir.join("tokenizer.json").display()
            ))
        })?;
        let max_tokens = std::fs::read_to_string(dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|text| serde_json::from_str::<SentenceConfig>(&text).ok())
            .and_then(|sentence| sentence.max_seq_length)
            .unwrap_or(DEFAULT_MAX_TOKENS)
            .min(config.max_position_embeddings);
        // As sentence-transformers does: longer texts are cut at the model's length, and a
        // batch is padded to its longest text (tokenizer.json may say otherwise).
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|error| ModelError(format!("tokenizer truncation: {error}")))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        let path = dir.join("model.safetensors");
        let tensors = read_safetensors(&path)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let bert = Bert::load(vb, config, activation).map_err(model_error("model.safetensors"))?;
        Ok(Self { tokenizer, bert })
    }

    /// One vector per text, in order, in one forward pass.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|error| ModelError(format!("tokenizing: {error}")))?;
        let tokens = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(texts.len() * tokens);
        let mut mask = Vec::with_capacity(texts.len() * tokens);
        for encoding in &encodings {
            ids.extend_from_slice(encoding.get_ids());
            mask.extend(encoding.get_attention_mask().iter().map(|&m| m as f32));
        }
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let ids = Tensor::from_vec(ids, (texts.len(), tokens), &Device::Cpu)?;
            let mask = Tensor::from_vec(mask, (texts.len(), tokens), &Device::Cpu)?;
            self.bert.embed(&ids, &mask)?.to_vec2::<f32>()
        };
        run().map_err(model_error("the encoder"))
    }
}

/// What the model's thread is asked: texts and where to send their vectors.
struct Request {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Vec<f32>>, ModelError>>,
}

#[derive(Default)]
struct Queues {
    questions: VecDeque<Request>,
    batches: VecDeque<Request>,
    closed: bool,
}

struct Shared {
    queues: Mutex<Queues>,
    wake: Condvar,
}

/// A model directory opened in this process: its shape, identity and the thread that runs it.
pub struct LocalModel {
    dir: PathBuf,
    dimensions: usize,
    fingerprint: String,
    shared: Arc<Shared>,
    places: Semaphore,
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("dir", &self.dir)
            .field("dimensions", &self.dimensions)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Models open in this process, by canonical directory: the chat and ingest roles share one.
fn open_models() -> &'static Mutex<HashMap<PathBuf, Weak<LocalModel>>> {
    static MODELS: OnceLock<Mutex<HashMap<PathBuf, Weak<LocalModel>>>> = OnceLock::new();
    MODELS.get_or_init(Mutex::default)
}

impl LocalModel {
    /// Opens the model in `dir` (config.json, tokenizer.json, model.safetensors), or returns
    /// the one this process already has open. The directory and `config.json` are checked now;
    /// the weights load on the model's own thread, and requests wait for them.
    pub fn open(dir: &Path) -> Result<Arc<Self>, ModelError> {
        let canonical = dir.canonicalize().map_err(|error| {
            ModelError(format!("embeddings.local_model {}: {error}", dir.display()))
        })?;
        let mut models = open_models().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(model) = models.get(&canonical).and_then(Weak::upgrade) {
            return Ok(model);
        }
        for file in ["config.json", "tokenizer.json", "model.safetensors"] {
            if !canonical.join(file).is_file() {
                return Err(ModelError(format!(
                    "embeddings.local_model {}: no {file} there (the directory needs \
                     config.json, tokenizer.json and model.safetensors)",
                    dir.display()
                )));
            }
        }
        let (config, activation) = BertConfig::read(&canonical)?;
        let fingerprint = fingerprint(&canonical)?;
        let shared = Arc::new(Shared {
            queues: Mutex::default(),
            wake: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread_dir = canonical.clone();
        let thread_config = config.clone();
        std::thread::Builder::new()
            .name("engram-embed".into())
            .spawn(move || run(&thread_dir, &thread_config, activation, &thread_shared))
            .map_err(|error| ModelError(format!("cannot start the model's thread: {error}")))?;
        let model = Arc::new(Self {
            dir: canonical.clone(),
            dimensions: config.hidden_size,
            fingerprint,
            shared,
            places: Semaphore::new(MAX_QUEUED),
        });
        models.retain(|_, model| model.strong_count() > 0);
        models.insert(canonical, Arc::downgrade(&model));
        Ok(model)
    }

    /// The width of the vectors of the model in `dir`, from its `config.json` alone.
    pub fn dimensions_in(dir: &Path) -> Result<usize, ModelError> {
        let (config, _) = BertConfig::read(dir).map_err(|error| {
            ModelError(format!("embeddings.local_model {}: {error}", dir.display()))
        })?;
        Ok(config.hidden_size)
    }

    /// The model's directory (canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Width of the vectors (the encoder's hidden size).
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// What identifies the model's vectors: the directory's name and a hash of its config,
    /// tokenizer and weights' layout and size. Vectors of two models with different
    /// identities are not comparable.
    pub fn identity(&self) -> String {
        let name = self
            .dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("local:{name}@{}", self.fingerprint)
    }

    /// The vector of one question; it goes ahead of every ingestion batch waiting.
    pub async fn embed_question(&self, text: &str) -> Result<Vec<f32>, ModelError> {
        let mut vectors = self.request(vec![text.to_string()], true).await?;
        vectors
            .pop()
            .ok_or_else(|| ModelError("the encoder returned no vector".into()))
    }

    /// One vector per text, in order, `BATCH` texts per forward pass; questions asked
    /// meanwhile run between the passes.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            vectors.extend(self.request(batch.to_vec(), false).await?);
        }
        Ok(vectors)
    }

    async fn request(
        &self,
        texts: Vec<String>,
        question: bool,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let count = texts.len();
        let _place = self
            .places
            .acquire()
            .await
            .map_err(|_| ModelError("the model is closed".into()))?;
        let (reply, answer) = oneshot::channel();
        {
            let mut queues = self.shared.queues.lock().unwrap_or_else(|e| e.into_inner());
            let request = Request { texts, reply };
            if question {
                queues.questions.push_back(request);
            } else {
                queues.batches.push_back(request);
            }
        }
        self.shared.wake.notify_one();
        let vectors = answer
            .await
            .map_err(|_| ModelError("the model's thread stopped".into()))??;
        if vectors.len() != count {
            return Err(ModelError(format!(
                "asked for {count} vectors, the encoder returned {}",
                vectors.len()
            )));
        }
        Ok(vectors)
    }
}

impl Drop for LocalModel {
    fn drop(&mut self) {
        self.shared
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
        self.shared.wake.notify_all();
    }
}

/// The model's thread: loads the weights, then serves questions first and batches after,
/// until the model is dropped. A load that fails is reported to every request.
fn run(dir: &Path, config: &BertConfig, activation: Activation, shared: &Shared) {
    let started = std::time::Instant::now();
    let loaded = Loaded::load(dir, config, activation);
    match &loaded {
        Ok(_) => tracing::info!(
            model = %dir.display(),
            ms = started.elapsed().as_millis() as u64,
            "local embedding model loaded"
        ),
        Err(error) => tracing::error!(%error, "cannot load the local embedding model"),
    }
    loop {
        let request = {
            let mut queues = shared.queues.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(request) = queues.questions.pop_front() {
                    break request;
                }
                if let Some(request) = queues.batches.pop_front() {
                    break request;
                }
                if queues.closed {
                    return;
                }
                queues = shared.wake.wait(queues).unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = match &loaded {
            Ok(model) => model.embed(&request.texts),
            Err(error) => Err(error.clone()),
        };
        // The asker may have given up; nothing to do then.
        let _ = request.reply.send(result);
    }
}

/// A short hash of what makes the model's vectors what they are: config.json, tokenizer.json,
/// the weights' header (names, shapes, types, offsets) and their file's size.
fn fingerprint(dir: &Path) -> Result<String, ModelError> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(|error| {
            ModelError(format!("cannot read {}: {error}", dir.join(name).display()))
        })
    };
    let mut hash = Sha256::new();
    hash.update(read("config.json")?);
    hash.update(read("tokenizer.json")?);
    let weights = dir.join("model.safetensors");
    let header = safetensors_header(&weights)
        .map_err(|error| ModelError(format!("cannot read {}: {error}", weights.display())))?;
    hash.update(&header);
    let size = std::fs::metadata(&weights)
        .map_err(|error| ModelError(format!("cannot read {}: {error}", weights.display())))?
        .len();
    hash.update(size.to_le_bytes());
    let digest = hash.finalize();
    Ok(digest[..6]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// One tensor's entry in a safetensors header.
#[derive(Debug, Deserialize)]
struct TensorEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Every tensor of a safetensors file, read one at a time (so loading needs the weights' size
/// plus the largest tensor, not twice the file) and kept as f32.
fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>, ModelError> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let fail = |reason: String| ModelError(format!("{}: {reason}", path.display()));
    let header = safetensors_header(path).map_err(|error| fail(error.to_string()))?;
    let entries: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|error| fail(format!("bad header: {error}")))?;
    let data_start = 8 + header.len() as u64;
    let mut file = std::fs::File::open(path).map_err(|error| fail(error.to_string()))?;
    let mut tensors = HashMap::with_capacity(entries.len());
    for (name, entry) in entries {
        if name == "__metadata__" {
            continue;
        }
        let entry: TensorEntry = serde_json::from_value(entry)
            .map_err(|error| fail(format!("tensor {name}: {error}")))?;
        let dtype = match entry.dtype.as_str() {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "I64" => DType::I64,
            other => {
                return Err(fail(format!(
                    "tensor {name}: type {other} is not supported"
                )))
            }
        };
        let [start, end] = entry.data_offsets;
        let expected = entry.shape.iter().product::<usize>() as u64 * dtype.size_in_bytes() as u64;
        if end < start || end - start != expected {
            return Err(fail(format!(
                "tensor {name}: its size does not match its shape"
            )));
        }
        let mut bytes = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(data_start + start))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|error| fail(format!("tensor {name}: {error}")))?;
        let tensor = Tensor::from_raw_buffer(&bytes, dtype, &entry.shape, &Device::Cpu)
            .and_then(|tensor| {
                if dtype == DType::F32 || dtype == DType::I64 {
                    Ok(tensor)
                } else {
                    tensor.to_dtype(DType::F32)
                }
            })
            .map_err(|error| fail(format!("tensor {name}: {error}")))?;
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}

/// The JSON header of a safetensors file (8-byte little-endian length, then the JSON).
fn safetensors_header(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length)?;
    let length = u64::from_le_bytes(length);
    if length > 100 * 1024 * 1024 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a safetensors file (header too large)",
        ));
    }
    let mut header = vec![0u8; length as usize];
    file.read_exact(&mut header)?;
    Ok(header)
}
