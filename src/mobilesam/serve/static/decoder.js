// The mask decoder in the browser: onnxruntime-web (WebAssembly) running decoder.onnx, the
// graph with SAM's ONNX decoder signature, on the image embedding fetched once per image.
// Everything comes from this server (/api/web says where); nothing from the internet.
"use strict";

const BrowserDecoder = (() => {
  let session = null;
  let maskInputSize = 64;
  let image = null;  // {id, data: Float32Array, dims, original: [H, W], input: [h, w]}

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = src;
      s.onload = resolve;
      s.onerror = () => reject(new Error("cannot load " + src));
      document.head.appendChild(s);
    });
  }

  // Resolves to a reason string when the browser decoder cannot be used, else null.
  async function init(config, health) {
    if (typeof WebAssembly !== "object") return "this browser has no WebAssembly";
    if (!config.runtime) return "onnxruntime-web is not installed on the server";
    if (!config.decoder) return "the server cannot export the decoder graph";
    try {
      await loadScript(config.runtime + "ort.wasm.min.js");
      ort.env.wasm.wasmPaths = config.runtime;
      ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation headers
      const response = await fetch(config.decoder);
      if (!response.ok) return "the decoder graph is unavailable (" + response.status + ")";
      const bytes = new Uint8Array(await response.arrayBuffer());
      session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
      maskInputSize = health.mask_input_size;
      return null;
    } catch (err) {
      session = null;
      return "onnxruntime-web failed: " + err.message;
    }
  }

  function ready() { return session !== null; }

  // Fetch the embedding of an uploaded image (once) with the sizes the prompts need.
  async function setImage(imageId) {
    if (!session) return false;
    if (image && image.id === imageId) return true;
    image = null;
    const r = await fetch("/api/images/" + imageId + "/embedding?format=raw&dtype=float32");
    if (!r.ok) throw new Error("embedding request failed (" + r.status + ")");
    const nums = (name) => r.headers.get(name).split(",").map(Number);
    image = {
      id: imageId,
      data: new Float32Array(await r.arrayBuffer()),
      dims: nums("X-Embedding-Shape"),
      original: nums("X-Original-Size"),
      input: nums("X-Input-Size"),
    };
    return true;
  }

  // prompts: {points: [[x, y]...], labels: [...], box: [x0, y0, x1, y1] | null} in image pixels.
  // Returns {masks: [{score, mask: Uint8Array HxW row-major}], best}, like the server's predict.
  async function decode(imageId, prompts, multimask) {
    if (!session || !image || image.id !== imageId) throw new Error("no embedding");
    const [H, W] = image.original;
    const sy = image.input[0] / H, sx = image.input[1] / W;  // to the resized input frame
    const coords = [], labels = [];
    (prompts.points || []).forEach(([x, y], i) => {
      coords.push(x * sx, y * sy);
      labels.push(prompts.labels[i]);
    });
    if (prompts.box) {
      const [x0, y0, x1, y1] = prompts.box;
      coords.push(x0 * sx, y0 * sy, x1 * sx, y1 * sy);
      labels.push(2, 3);
    } else {
      coords.push(0, 0);  // SAM's padding point when there is no box
      labels.push(-1);
    }
    const n = labels.length, m = maskInputSize;
    const feeds = {
      image_embeddings: new ort.Tensor("float32", image.data, image.dims),
      point_coords: new ort.Tensor("float32", Float32Array.from(coords), [1, n, 2]),
      point_labels: new ort.Tensor("float32", Float32Array.from(labels), [1, n]),
      mask_input: new ort.Tensor("float32", new Float32Array(m * m), [1, 1, m, m]),
      has_mask_input: new ort.Tensor("float32", new Float32Array([0]), [1]),
      orig_im_size: new ort.Tensor("float32", new Float32Array([H, W]), [2]),
    };
    const out = await session.run(feeds);
    const logits = out.masks.data, iou = out.iou_predictions.data;
    const tokens = multimask ? [1, 2, 3] : [0];  // token 0: the single-mask output
    const masks = tokens.map((t) => {
      const mask = new Uint8Array(H * W);
      const off = t * H * W;
      for (let i = 0; i < H * W; i++) mask[i] = logits[off + i] > 0 ? 1 : 0;
      return { score: iou[t], mask };
    });
    let best = 0;
    masks.forEach((mk, i) => { if (mk.score > masks[best].score) best = i; });
    return { masks, best };
  }

  return { init, ready, setImage, decode };
})();
