// vidcap's web page: plain JavaScript against the HTTP API (README: "Using the service").
// No build step and no dependencies; everything it loads comes from this server.
"use strict";

(() => {
  const KEY_STORAGE = "vidcap.apiKey";
  const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
  const PAGE_SIZE = 20;

  // What each error code means, for a person. The server's own message is shown beneath.
  const MESSAGES = {
    network: "The server could not be reached. Check your connection and try again.",
    upload_interrupted:
      "The upload stopped before it finished: the connection dropped, or the file is larger than the server accepts.",
    bad_response: "The server sent an answer this page does not understand.",
    unauthorized: "Your API key was not accepted. Check it and enter it again.",
    not_found: "The page asked the server for something it does not offer.",
    method_not_allowed: "The page asked the server for something it does not offer.",
    video_not_found: "This video is gone: it was deleted, or it expired.",
    job_not_found: "This job is gone: it expired, or its video was deleted.",
    validation_error: "Some of what was sent is not valid.",
    invalid_json: "The request was garbled on the way to the server. Try again.",
    unsupported_media_type: "The server expected a video file or a link to one.",
    missing_file: "No file was sent. Choose a video and try again.",
    empty_file: "This file is empty. Choose another one.",
    file_too_large: "This file is larger than the server accepts. Try a shorter or smaller video.",
    body_too_large: "What was sent is larger than the server accepts for this request.",
    request_timeout:
      "The upload stalled or came in too slowly, so the server stopped waiting. Check your connection and try again.",
    idempotency_key_reused: "This request repeats an earlier one's key with different content.",
    not_a_video: "This file is not a video. Choose a video file, such as an MP4, WebM or MOV.",
    no_video_stream: "This file has sound but no picture. Choose a file with video in it.",
    unsupported_container:
      "This kind of video file is not accepted. Save it as MP4, WebM, MKV or MOV and try again.",
    unsupported_codec:
      "This video is encoded in a format the server does not accept. Convert it to H.264 (MP4) and try again.",
    corrupt_media:
      "This video file is damaged or incomplete (perhaps it was cut short while copying). Try the original file.",
    video_too_long: "This video is longer than the server accepts. Trim it and try again.",
    resolution_too_large:
      "This video's picture is larger than the server accepts. Export it at a lower resolution.",
    frame_rate_too_high:
      "This video's frame rate is higher than the server accepts. Export it at a lower frame rate.",
    too_many_frames: "This video has more frames than the server reads. Try a shorter video.",
    decode_timeout: "Reading this video took too long, so the server gave up.",
    decoder_crashed: "This video could not be read: the file looks damaged.",
    file_not_found: "The server lost this video's file. Upload it again.",
    url_not_allowed:
      "That link cannot be used: only public http:// or https:// addresses are allowed.",
    fetch_failed:
      "The server could not download the video from that link. Check that it opens the video file itself, not a web page.",
    fetch_timeout: "Downloading the video from that link took too long.",
    too_many_redirects: "That link redirects too many times to follow.",
    track_not_found: "This video has no such subtitle track. Choose another one.",
    video_not_ready: "The video is still being captioned. Ask again once it is ready.",
    video_failed: "This video could not be captioned, so there is nothing to ask about.",
    job_finished: "That job had already finished.",
    queue_full: "The server has too many videos waiting right now.",
    tenant_queue_full:
      "You have as many videos and questions waiting as this server allows; more can be sent as they finish.",
    rate_limited: "You are sending requests faster than the server allows.",
    redis_unavailable: "The server's job store is not reachable right now.",
    store_full: "The server's job store is full right now; nothing was changed. Try again later.",
    storage_unavailable: "The server's video store is not reachable right now.",
    scratch_full: "The worker had no room for this video. Try again later, or a smaller file.",
    upload_failed: "The video store refused part of the upload. Choose the same file again to resume.",
    direct_upload_unavailable: "This server takes uploads through its own address only.",
    upload_not_pending: "This video's upload was already completed.",
    upload_incomplete:
      "Part of the file did not arrive. Choose the same file again to send what is missing.",
    upload_size_mismatch:
      "The file that arrived is not the size it should be, so it was discarded. Upload it again.",
    not_ready: "No worker is running on the server to caption videos.",
    internal_error: "Something went wrong on the server.",
    worker_lost:
      "The machine working on this video stopped, and retrying did not help. Upload it again to try once more.",
    job_timeout:
      "Captioning took longer than the server allows and was stopped. A shorter video may work.",
    model_error:
      "The captioning model failed on this video. This is a bug on the server; please report it.",
    canceled: "Captioning was canceled.",
  };
  const TRY_LATER = new Set([
    "queue_full",
    "tenant_queue_full",
    "rate_limited",
    "redis_unavailable",
    "storage_unavailable",
    "not_ready",
  ]);

  const STAGES = {
    probing: "Checking the file",
    transcribing: "Listening to the speech",
    reading_text: "Reading the text on screen",
    tagging: "Recognising what is seen",
    decoding: "Reading frames and sound",
    features: "Looking and listening",
    fusion: "Putting sight and sound together",
    generating: "Writing captions",
  };
  const STATUS_NAMES = {
    uploading: "Uploading",
    queued: "Waiting",
    processing: "Captioning",
    ready: "Ready",
    failed: "Failed",
    canceled: "Canceled",
  };
  // The caption tracks a video can have, in the order the selector lists them.
  const TRACK_NAMES = {
    speech: "Speech",
    translation: "English translation",
    description: "Description",
  };

  const VIDEO_STATUS_OF_JOB = {
    queued: "queued",
    running: "processing",
    succeeded: "ready",
    failed: "failed",
    canceled: "canceled",
  };

  const $ = (id) => document.getElementById(id);
  const el = (tag, props = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  };

  const state = {
    key: null, // the API key in use (null: none)
    videos: [], // the list, newest first
    cursor: null, // next_cursor of the list
    current: null, // the video open in the panel
    follow: null, // AbortController of the current video's jobs and fetches
    localFiles: new Map(), // video id -> File picked on this page (a preview until media_url)
    blobUrls: [], // object URLs of the current video, revoked when it changes
    uploading: false,
    direct: undefined, // whether the server takes uploads straight into its store (asked once)
    pendingDelete: null,
    track: null, // the caption track shown ("speech", "description", "translation"; "" off)
    lines: [], // the transcript segments listed beside the video (speech or its translation)
  };

  // --------------------------------------------------------------------------- the API

  class ApiError extends Error {
    constructor(code, message, { status = null, requestId = null, retryAfter = null } = {}) {
      super(message);
      this.code = code;
      this.status = status;
      this.requestId = requestId;
      this.retryAfter = retryAfter;
    }
  }

  function errorFrom(status, body, headers) {
    const detail = body && body.error ? body.error : {};
    const retry = headers ? parseInt(headers.get("Retry-After") || "", 10) : NaN;
    return new ApiError(detail.code || `http_${status}`, detail.message || `HTTP ${status}`, {
      status,
      requestId: detail.request_id || (headers && headers.get("X-Request-ID")),
      retryAfter: Number.isFinite(retry) ? retry : null,
    });
  }

  function authHeaders(extra = {}) {
    return state.key ? { ...extra, Authorization: `Bearer ${state.key}` } : { ...extra };
  }

  async function request(path, { method = "GET", json, signal, key } = {}) {
    const headers = key === undefined ? authHeaders() : key ? { Authorization: `Bearer ${key}` } : {};
    if (json !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: json === undefined ? undefined : JSON.stringify(json),
        signal,
        cache: "no-store",
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError("network", String(error.message || error));
    }
    return response;
  }

  async function api(path, options = {}) {
    const response = await request(path, options);
    if (response.status === 204) return null;
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      if (error.name === "AbortError") throw error;
      if (response.ok) throw new ApiError("bad_response", "the body is not JSON", { status: response.status });
    }
    if (!response.ok) throw errorFrom(response.status, body, response.headers);
    return body;
  }

  // Jobs followed at once: each holds a connection, and a browser opens only 6 per server.
  const slots = { free: 3, waiting: [] };

  async function followJob(jobId, onUpdate, signal) {
    while (slots.free === 0) await new Promise((resolve) => slots.waiting.push(resolve));
    slots.free -= 1;
    try {
      return await followJobNow(jobId, onUpdate, signal);
    } finally {
      slots.free += 1;
      const next = slots.waiting.shift();
      if (next) next();
    }
  }

  // Follows a job until it ends: server-sent events read with fetch() (EventSource cannot send
  // the Authorization header), falling back to long-polling if the stream breaks.
  async function followJobNow(jobId, onUpdate, signal) {
    if (signal.aborted) throw new DOMException("aborted", "AbortError");
    let job = null;
    try {
      job = await streamJob(jobId, onUpdate, signal);
    } catch (error) {
      if (signal.aborted || (error instanceof ApiError && error.status)) throw error;
    }
    let failures = 0;
    while (!job || !TERMINAL.has(job.state)) {
      try {
        job = await api(`/v1/jobs/${encodeURIComponent(jobId)}?wait=20`, { signal });
        failures = 0;
        onUpdate(job);
      } catch (error) {
        if (signal.aborted || !(error instanceof ApiError) || error.status || ++failures > 5) throw error;
        await sleep(1000 * failures, signal);
      }
    }
    return job;
  }

  async function streamJob(jobId, onUpdate, signal) {
    const response = await request(`/v1/jobs/${encodeURIComponent(jobId)}/events`, { signal });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw errorFrom(response.status, body, response.headers);
    }
    if (!response.body || typeof TextDecoderStream === "undefined") return null;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let last = null;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return last;
        buffer += value;
        buffer = buffer.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (!line || line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            let text = colon < 0 ? "" : line.slice(colon + 1);
            if (text.startsWith(" ")) text = text.slice(1);
            if (field === "event") event = text;
            else if (field === "data") data.push(text);
          }
          if (event !== "job" || !data.length) continue;
          last = JSON.parse(data.join("\n"));
          onUpdate(last);
          if (TERMINAL.has(last.state)) return last;
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      signal?.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      });
    });
  }

  // --------------------------------------------------------------------------- messages

  function describe(error) {
    const code = error instanceof ApiError ? error.code : "internal_error";
    let text = MESSAGES[code] || error.message || "Something went wrong.";
    if (code === "validation_error" && error.message) text = `${text} ${sentence(error.message)}`;
    if (error.retryAfter) text = `${text} Try again in ${duration(error.retryAfter)}.`;
    else if (TRY_LATER.has(code)) text = `${text} Try again in a moment.`;
    const bits = [];
    if (error.message && MESSAGES[code] && code !== "validation_error") bits.push(`The server said: ${sentence(error.message)}`);
    const refs = [code, error.requestId ? `request ${error.requestId}` : null].filter(Boolean);
    return { text, detail: [bits.join(" "), `(${refs.join(", ")})`].filter(Boolean).join(" ") };
  }

  function sentence(text) {
    const s = String(text).trim();
    if (!s) return s;
    return s[0].toUpperCase() + s.slice(1) + (/[.!?]$/.test(s) ? "" : ".");
  }

  function showError(box, error) {
    if (!error || error.name === "AbortError") return;
    if (error instanceof ApiError && error.code === "unauthorized" && !$("app").hidden) {
      forgetKey();
      askForKey("Your API key was not accepted any more. Enter it again.");
      return;
    }
    if (!(error instanceof ApiError)) console.warn(error); // a bug in this page: keep a trace
    const { text, detail } = describe(error);
    box.replaceChildren(el("p", { class: "message", text }), el("p", { class: "detail", text: detail }));
    box.hidden = false;
  }

  // Says something to screen readers (stage changes, not every percent).
  function announce(text) {
    $("announce").textContent = text;
  }

  function clearError(box) {
    box.hidden = true;
    box.replaceChildren();
  }

  // --------------------------------------------------------------------------- formatting

  function duration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s === 1 ? "1 second" : `${s} seconds`;
    const m = Math.round(s / 60);
    return m === 1 ? "1 minute" : `${m} minutes`;
  }

  function clock(seconds) {
    const total = Math.max(0, Math.floor(seconds + 1e-6));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = String(total % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function clockPrecise(seconds) {
    const s = Math.max(0, seconds);
    const whole = clock(s);
    return `${whole}.${Math.floor((s % 1) * 10)}`;
  }

  function bytes(n) {
    if (n < 1024) return `${n} B`;
    const units = ["KB", "MB", "GB", "TB"];
    let value = n / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${value >= 10 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
  }

  function when(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return "";
    const today = new Date();
    const sameDay = date.toDateString() === today.toDateString();
    return sameDay
      ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : date.toLocaleDateString([], { day: "numeric", month: "short", year: "numeric" });
  }

  function titleOf(video) {
    return video.filename || video.id;
  }

  function mediaFacts(video) {
    const m = video.media || {};
    const facts = [];
    if (m.duration_s) facts.push(clock(m.duration_s));
    const w = m.display_width || m.width;
    const h = m.display_height || m.height;
    if (w && h) facts.push(`${w}×${h}`);
    if (m.video_codec) facts.push(String(m.video_codec).toUpperCase());
    if (m.has_audio === false) facts.push("no sound");
    if (video.size_bytes) facts.push(bytes(video.size_bytes));
    if (video.created_at) facts.push(`added ${when(video.created_at)}`);
    return facts.join(" · ");
  }

  function setBadge(node, status) {
    node.className = `badge ${status}`;
    node.textContent = STATUS_NAMES[status] || status;
  }

  // --------------------------------------------------------------------------- the API key

  async function boot() {
    $("boot").hidden = false;
    $("boot-error").hidden = true;
    try {
      state.key = state.key || localStorage.getItem(KEY_STORAGE);
    } catch {
      // storage blocked: the key lasts for this page only
    }
    try {
      const page = await api(`/v1/videos?limit=${PAGE_SIZE}`, { key: state.key || null });
      showApp(page);
    } catch (error) {
      if (error instanceof ApiError && error.code === "unauthorized") {
        const hadKey = Boolean(state.key);
        forgetKey();
        askForKey(hadKey ? "The saved API key was not accepted. Enter it again." : null);
        return;
      }
      $("boot").hidden = true;
      const box = $("boot-error");
      box.hidden = false;
      showError(box.querySelector(".error"), error);
    }
  }

  function askForKey(message) {
    abortFollow();
    $("boot").hidden = true;
    $("app").hidden = true;
    $("key-status").hidden = true;
    $("key-panel").hidden = false;
    const box = $("key-error");
    if (message) {
      box.replaceChildren(el("p", { text: message }));
      box.hidden = false;
    } else {
      clearError(box);
    }
    $("key-input").value = "";
    $("key-input").focus();
  }

  async function submitKey(event) {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    const button = event.submitter || $("key-form").querySelector("button");
    button.disabled = true;
    try {
      const page = await api(`/v1/videos?limit=${PAGE_SIZE}`, { key });
      state.key = key;
      try {
        localStorage.setItem(KEY_STORAGE, key);
      } catch {
        // private mode without storage: the key lasts for this page only
      }
      $("key-panel").hidden = true;
      showApp(page);
    } catch (error) {
      const box = $("key-error");
      if (error instanceof ApiError && error.code === "unauthorized") {
        box.replaceChildren(el("p", { text: "That key was not accepted. Check it and try again." }));
        box.hidden = false;
      } else {
        showError(box, error);
      }
      $("key-input").select();
    } finally {
      button.disabled = false;
    }
  }

  function forgetKey() {
    state.key = null;
    try {
      localStorage.removeItem(KEY_STORAGE);
    } catch {
      // nothing stored
    }
  }

  function showApp(page) {
    $("boot").hidden = true;
    $("key-panel").hidden = true;
    $("app").hidden = false;
    $("key-status").hidden = !state.key;
    state.videos = page.videos;
    state.cursor = page.next_cursor;
    renderList();
  }

  // --------------------------------------------------------------------------- uploading

  function segmentSeconds() {
    const input = $("segment-input");
    if (!input.value) return null;
    if (!input.checkValidity()) {
      throw new ApiError(
        "validation_error",
        `segment length: a number of seconds from ${input.min} to ${input.max}`,
      );
    }
    return input.value;
  }

  // The speech options of the upload form, as form fields (nothing sent for the defaults).
  function speechOptions() {
    const options = {};
    const language = $("language-input").value;
    if (language && language !== "auto") options.language = language;
    if ($("translate-input").checked) options.translate = true;
    return options;
  }

  function setUploading(busy) {
    state.uploading = busy;
    $("drop").classList.toggle("busy", busy);
    $("file-input").disabled = busy;
    for (const control of $("url-form").elements) control.disabled = busy;
  }

  // The upload form's options as JSON fields (direct uploads) and form fields (streamed).
  function uploadOptions() {
    const fields = { ...speechOptions() };
    const seconds = segmentSeconds();
    if (seconds) fields.segment_seconds = Number(seconds);
    return fields;
  }

  function showUploadProgress(file, sent) {
    const percent = file.size ? Math.floor((100 * sent) / file.size) : 100;
    $("upload-progress").value = percent;
    $("upload-percent").textContent = `${percent}%`;
    if (sent >= file.size) $("upload-label").textContent = `Checking ${file.name}…`;
  }

  async function uploadFile(file) {
    if (state.uploading) return;
    clearError($("upload-error"));
    let fields;
    try {
      fields = uploadOptions();
    } catch (error) {
      showError($("upload-error"), error);
      return;
    }
    setUploading(true);
    $("upload-progress-box").hidden = false;
    $("upload-progress").value = 0;
    $("upload-label").textContent = `Uploading ${file.name}…`;
    $("upload-percent").textContent = "0%";
    let created = null;
    try {
      created = await uploadDirect(file, fields);
    } catch (error) {
      uploadDone(file, null, error);
      return;
    }
    if (created) uploadDone(file, created, null);
    else uploadThroughApi(file, fields);
  }

  function uploadDone(file, created, error) {
    setUploading(false);
    $("upload-progress-box").hidden = true;
    if (error) {
      showError($("upload-error"), error);
      return;
    }
    $("file-input").value = "";
    state.localFiles.set(created.video.id, file);
    accepted(created);
  }

  // A server that stores videos in S3 takes the bytes straight into the store, on presigned
  // links (in parts for a large file). An interrupted upload of the same file with the same
  // options resumes: its video is remembered in localStorage until the upload completes.
  // Resolves to null when the server does not offer direct uploads.
  async function uploadDirect(file, fields) {
    if (state.direct === undefined) state.direct = (await api("/v1/uploads")).direct;
    if (!state.direct) return null;
    const mark = `vidcap.upload:${file.name}:${file.size}:${file.lastModified}:${JSON.stringify(fields)}`;
    let started = null;
    const remembered = localStorage.getItem(mark);
    if (remembered) {
      try {
        started = await api(`/v1/videos/${encodeURIComponent(remembered)}/upload`);
      } catch {
        localStorage.removeItem(mark); // completed, deleted or expired: start again
      }
    }
    if (!started) {
      const body = { filename: file.name, size_bytes: file.size, ...fields };
      started = await api("/v1/videos/direct", { method: "POST", json: body });
      localStorage.setItem(mark, started.video.id);
    }
    const upload = started.upload;
    const pieces = upload.url
      ? [{ url: upload.url, start: 0, end: file.size }]
      : upload.parts
          .filter((part) => !part.uploaded)
          .map((part) => ({
            url: part.url,
            start: (part.number - 1) * upload.part_bytes,
            end: Math.min(part.number * upload.part_bytes, file.size),
          }));
    let sent = file.size - pieces.reduce((total, piece) => total + piece.end - piece.start, 0);
    showUploadProgress(file, sent);
    for (const piece of pieces) {
      await putPiece(piece.url, file.slice(piece.start, piece.end), (loaded) =>
        showUploadProgress(file, Math.min(file.size, sent + loaded)),
      );
      sent += piece.end - piece.start;
    }
    const created = await api(upload.complete_url, { method: "POST" });
    localStorage.removeItem(mark);
    return created;
  }

  // PUTs a piece of the file to a presigned link (which carries its own signature: no key).
  function putPiece(url, blob, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      xhr.upload.addEventListener("progress", (event) => onProgress(event.loaded));
      xhr.addEventListener("load", () => {
        if (xhr.status >= 200 && xhr.status < 300) resolve();
        else {
          const message = `the store refused a part of the upload (HTTP ${xhr.status})`;
          reject(new ApiError("upload_failed", message, { status: xhr.status }));
        }
      });
      const interrupted = () =>
        reject(
          new ApiError(
            "upload_interrupted",
            "the connection closed during the upload; choose the same file again to resume",
          ),
        );
      xhr.addEventListener("error", interrupted);
      xhr.addEventListener("timeout", interrupted);
      xhr.send(blob);
    });
  }

  function uploadThroughApi(file, fields) {
    const form = new FormData();
    form.append("file", file, file.name);
    for (const [name, value] of Object.entries(fields)) form.append(name, String(value));

    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/videos");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) showUploadProgress(file, (event.loaded * file.size) / event.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // not JSON: reported below
      }
      const headers = { get: (name) => xhr.getResponseHeader(name) };
      if (xhr.status === 200 || xhr.status === 202) {
        if (!body || !body.video) {
          uploadDone(file, null, new ApiError("bad_response", "no video in the answer"));
        } else {
          uploadDone(file, body, null);
        }
      } else {
        uploadDone(file, null, errorFrom(xhr.status, body, headers));
      }
    });
    const failed = (code) => () =>
      uploadDone(file, null, new ApiError(code, "the connection closed during the upload"));
    xhr.addEventListener("error", failed("upload_interrupted"));
    xhr.addEventListener("timeout", failed("upload_interrupted"));
    xhr.send(form);
  }

  async function fetchUrl(event) {
    event.preventDefault();
    if (state.uploading) return;
    const input = $("url-input");
    const url = input.value.trim();
    if (!url) return;
    clearError($("upload-error"));
    let body;
    try {
      const seconds = segmentSeconds();
      body = { url, ...speechOptions() };
      if (seconds) body.segment_seconds = Number(seconds);
    } catch (error) {
      showError($("upload-error"), error);
      return;
    }
    setUploading(true);
    const box = $("upload-progress-box");
    box.hidden = false;
    $("upload-progress").removeAttribute("value"); // indeterminate: the server downloads it
    $("upload-label").textContent = "The server is downloading the video…";
    $("upload-percent").textContent = "";
    try {
      const created = await api("/v1/videos", { method: "POST", json: body });
      input.value = "";
      accepted(created);
    } catch (error) {
      showError($("upload-error"), error);
    } finally {
      setUploading(false);
      box.hidden = true;
      $("upload-progress").value = 0;
    }
  }

  function accepted(created) {
    upsertVideo(created.video, true);
    openVideo(created.video, created.job);
    $("video-panel").scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  function setupDrop() {
    const drop = $("drop");
    const stop = (event) => {
      event.preventDefault();
      event.stopPropagation();
    };
    for (const name of ["dragenter", "dragover"]) {
      drop.addEventListener(name, (event) => {
        stop(event);
        if (!state.uploading) drop.classList.add("over");
      });
    }
    for (const name of ["dragleave", "dragend"]) {
      drop.addEventListener(name, (event) => {
        stop(event);
        drop.classList.remove("over");
      });
    }
    drop.addEventListener("drop", (event) => {
      stop(event);
      drop.classList.remove("over");
      const file = event.dataTransfer && event.dataTransfer.files[0];
      if (file) uploadFile(file);
    });
    // A file dropped beside the zone must not navigate away from the page.
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => event.preventDefault());
    $("file-input").addEventListener("change", (event) => {
      const file = event.target.files[0];
      if (file) uploadFile(file);
    });
  }

  // --------------------------------------------------------------------------- the current video

  function abortFollow() {
    if (state.follow) state.follow.abort();
    state.follow = null;
  }

  function releaseMedia() {
    const player = $("player");
    player.pause();
    for (const track of player.querySelectorAll("track")) track.remove();
    player.removeAttribute("src");
    player.load();
    for (const url of state.blobUrls) URL.revokeObjectURL(url);
    state.blobUrls = [];
    state.track = null;
    state.lines = [];
    $("track-select").replaceChildren();
  }

  function closeVideo() {
    abortFollow();
    releaseMedia();
    state.current = null;
    $("video-panel").hidden = true;
    renderList();
  }

  function openVideo(video, job) {
    abortFollow();
    releaseMedia();
    const controller = new AbortController();
    state.follow = controller;
    state.current = video;
    $("video-panel").hidden = false;
    $("result").hidden = true;
    $("qa-list").replaceChildren();
    clearError($("video-error"));
    clearError($("question-error"));
    $("player-note").hidden = true;
    renderHead(video);
    renderList();
    if (video.status === "ready") {
      showResult(video, controller.signal);
    } else if (video.status === "queued" || video.status === "processing") {
      trackCaptionJob(video, job, controller.signal);
    } else if (video.error) {
      showError($("video-error"), new ApiError(video.error.code, video.error.message));
    }
  }

  function renderHead(video) {
    $("video-title").textContent = titleOf(video);
    $("video-meta").textContent = mediaFacts(video);
    setBadge($("video-status"), video.status);
  }

  async function openById(videoId) {
    try {
      const video = await api(`/v1/videos/${encodeURIComponent(videoId)}`);
      upsertVideo(video);
      openVideo(video);
      $("video-panel").scrollIntoView({ behavior: "smooth", block: "start" });
      $("video-title").setAttribute("tabindex", "-1");
      $("video-title").focus({ preventScroll: true });
    } catch (error) {
      if (error instanceof ApiError && error.code === "video_not_found") removeVideo(videoId);
      showError($("library-error"), error);
    }
  }

  function showJob(job) {
    const box = $("job-box");
    box.hidden = TERMINAL.has(job.state);
    const stage = job.state === "queued" ? "Waiting for a worker" : STAGES[job.stage] || "Starting";
    if ($("job-label").textContent !== `${stage}…`) announce(`${stage}…`);
    $("job-label").textContent = `${stage}…`;
    $("job-progress").value = job.percent;
    $("job-percent").textContent = `${job.percent}%`;
    $("cancel-job").disabled = Boolean(job.cancel_requested);
  }

  async function trackCaptionJob(video, job, signal) {
    const jobId = video.caption_job_id;
    showJob(job || { state: "queued", stage: null, percent: 0 });
    $("cancel-job").onclick = () => cancelJob(jobId);
    let final;
    try {
      final = await followJob(
        jobId,
        (update) => {
          if (signal.aborted) return;
          showJob(update);
          const status = VIDEO_STATUS_OF_JOB[update.state];
          if (status && status !== video.status) {
            video.status = status;
            setBadge($("video-status"), status);
            upsertVideo(video);
          }
        },
        signal,
      );
    } catch (error) {
      if (!signal.aborted) {
        $("job-box").hidden = true;
        showError($("video-error"), error);
      }
      return;
    }
    if (signal.aborted) return;
    $("job-box").hidden = true;
    announce(final.state === "succeeded" ? "The captions are ready." : "Captioning did not finish.");
    if (final.state === "succeeded") {
      try {
        const fresh = await api(`/v1/videos/${encodeURIComponent(video.id)}`, { signal });
        state.current = fresh;
        upsertVideo(fresh);
        renderHead(fresh);
        showResult(fresh, signal);
      } catch (error) {
        if (!signal.aborted) showError($("video-error"), error);
      }
    } else {
      const error = final.error || { code: final.state, message: final.state };
      showError($("video-error"), new ApiError(error.code, error.message));
    }
  }

  async function cancelJob(jobId) {
    $("cancel-job").disabled = true;
    try {
      await api(`/v1/jobs/${encodeURIComponent(jobId)}/cancel`, { method: "POST" });
    } catch (error) {
      if (!(error instanceof ApiError && error.code === "job_finished")) {
        showError($("video-error"), error);
        $("cancel-job").disabled = false;
      }
    }
  }

  function showResult(video, signal) {
    $("result").hidden = false;
    $("caption").textContent = video.caption || "(no caption)";
    renderSegments(video.segments || []);
    const tracks = trackNames(video);
    state.track = tracks[0];
    renderTrackSelect(video, tracks);
    $("transcript-find").value = "";
    renderTranscript();
    // The transcript first when something is said, else the description's segments.
    selectTab(hasSpeech(video) ? "transcript" : "segments", false);
    renderTags(video.tags);
    renderScreenText(video.on_screen_text || []);
    attachMedia(video, signal);
    loadQuestions(video, signal);
    const ask = $("question-form").querySelector("button");
    ask.disabled = false;
  }

  function renderSegments(segments) {
    const list = $("segments");
    list.replaceChildren(
      ...segments.map((segment, index) =>
        el(
          "li",
          {},
          el(
            "button",
            {
              type: "button",
              class: "segment",
              "data-index": index,
              "aria-label": `Play from ${clock(segment.start)}: ${segment.text}`,
              onclick: () => seek(segment.start),
            },
            el("span", { class: "time", text: `${clock(segment.start)}–${clock(segment.end)}` }),
            el("span", { class: "text", text: segment.text || "(no caption)" }),
          ),
        ),
      ),
    );
    if (!segments.length) list.append(el("li", { class: "muted small", text: "No segments." }));
  }

  function seek(seconds) {
    const player = $("player");
    // A hair past the start, so the cue that begins there (not the one ending there) shows.
    player.currentTime = seconds + 0.001;
    highlight(seconds + 0.001);
  }

  function highlight(time) {
    const segments = (state.current && state.current.segments) || [];
    mark($("segments"), segments.findIndex((s) => time >= s.start && time < s.end));
    const spoken = state.lines.findIndex((s) => time >= s.start && time < s.end);
    const changed = mark($("transcript"), spoken);
    if (changed && spoken >= 0 && !$("player").paused) keepInView($("transcript"), spoken);
  }

  // Marks the button of segment `active` (-1: none) as current; true when that changed.
  function mark(list, active) {
    let changed = false;
    for (const button of list.querySelectorAll(".segment")) {
      const on = Number(button.dataset.index) === active;
      if (on === (button.getAttribute("aria-current") === "true")) continue;
      changed = true;
      if (on) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
    return changed;
  }

  // Scrolls the list (never the page) so the line being spoken is in sight.
  function keepInView(list, index) {
    const button = list.querySelector(`.segment[data-index="${index}"]`);
    if (!button || button.closest("[hidden]")) return;
    const top = button.getBoundingClientRect().top - list.getBoundingClientRect().top + list.scrollTop;
    const bottom = top + button.offsetHeight;
    if (top < list.scrollTop || bottom > list.scrollTop + list.clientHeight) {
      list.scrollTop = Math.max(0, top - list.clientHeight / 3);
    }
  }

  // --------------------------------------------------------------------------- speech, tags, text

  function hasSpeech(video) {
    return Boolean(video.transcript && video.transcript.segments && video.transcript.segments.length);
  }

  // The caption tracks of a video, the default first (the API lists them so).
  function trackNames(video) {
    const names = Object.keys(video.tracks || {}).filter((name) => TRACK_NAMES[name]);
    return names.length ? names : ["description"];
  }

  function languageName(code) {
    if (!code) return "";
    try {
      const names = new Intl.DisplayNames([navigator.language || "en", "en"], { type: "language" });
      return names.of(code) || code;
    } catch {
      return code;
    }
  }

  function trackLabel(video, name) {
    if (name === "speech" && video.transcript && video.transcript.language) {
      return `${TRACK_NAMES.speech} (${languageName(video.transcript.language)})`;
    }
    return TRACK_NAMES[name] || name;
  }

  function renderTrackSelect(video, tracks) {
    const select = $("track-select");
    select.replaceChildren(
      ...tracks.map((name) => el("option", { value: name, text: trackLabel(video, name) })),
      el("option", { value: "", text: "Off" }),
    );
    select.value = state.track;
    describeTrack();
  }

  function describeTrack() {
    const video = state.current;
    const note = $("track-language");
    note.textContent = "";
    if (!video) return;
    const t = state.track === "speech" ? video.transcript : state.track === "translation" ? video.translation : null;
    if (t && t.language && t.language_probability && state.track === "speech") {
      note.textContent = `detected with ${Math.round(100 * t.language_probability)}% confidence`;
    }
    const downloads = $("download-note");
    downloads.textContent = state.track ? `${TRACK_NAMES[state.track]} track` : "";
  }

  // Shows the chosen caption track on the player (and the matching transcript beside it).
  function chooseTrack(name) {
    state.track = name;
    $("track-select").value = name;
    applyTrackModes();
    describeTrack();
    renderTranscript();
    showFirstCue();
  }

  // Only the chosen track shows (the browser may switch one on by itself, by its preferences).
  function applyTrackModes() {
    for (const node of $("player").querySelectorAll("track")) {
      const mode = node.dataset.track === state.track ? "showing" : "disabled";
      if (node.track.mode !== mode) node.track.mode = mode;
    }
  }

  // The transcript beside the video: the translation while that track is on, else the speech.
  function renderTranscript() {
    const video = state.current || {};
    const translated = state.track === "translation" && video.translation;
    const transcript = translated ? video.translation : video.transcript;
    const segments = (transcript && transcript.segments) || [];
    state.lines = segments;
    const main = transcript && transcript.language;
    const list = $("transcript");
    list.replaceChildren(
      ...segments.map((segment, index) => {
        const other = segment.language && main && segment.language !== main;
        return el(
          "li",
          { "data-index": index },
          el(
            "button",
            {
              type: "button",
              class: "segment line",
              "data-index": index,
              "aria-label": `Play from ${clock(segment.start)}: ${segment.text}`,
              title: `${clockPrecise(segment.start)}–${clockPrecise(segment.end)}, ${Math.round(100 * (segment.confidence || 0))}% sure`,
              onclick: () => seek(segment.start),
            },
            el("span", { class: "time", text: clock(segment.start) }),
            el(
              "span",
              { class: "text" },
              el("span", { class: "words", text: segment.text }),
              other ? el("span", { class: "lang", text: languageName(segment.language) }) : null,
            ),
          ),
        );
      }),
    );
    $("tab-transcript").textContent = translated ? "Transcript (English)" : "Transcript";
    $("transcript-find").disabled = !segments.length;
    if (!segments.length) {
      list.append(el("li", { class: "muted small empty-line", text: "Nothing is said in this video." }));
    }
    findInTranscript();
    highlight($("player").currentTime || 0);
  }

  // Filters the transcript to the lines holding the words typed, and marks them.
  function findInTranscript() {
    const query = $("transcript-find").value.trim().replace(/\s+/g, " ");
    const needle = query.toLowerCase();
    let shown = 0;
    for (const item of $("transcript").querySelectorAll("li[data-index]")) {
      const words = item.querySelector(".words");
      const text = state.lines[Number(item.dataset.index)].text;
      const at = needle ? text.toLowerCase().indexOf(needle) : -1;
      const match = !needle || at >= 0;
      item.hidden = !match;
      if (match) shown += 1;
      if (!needle) {
        words.textContent = text;
        continue;
      }
      const parts = [];
      let from = 0;
      let found = at;
      while (found >= 0) {
        parts.push(text.slice(from, found), el("mark", { text: text.slice(found, found + needle.length) }));
        from = found + needle.length;
        found = text.toLowerCase().indexOf(needle, from);
      }
      parts.push(text.slice(from));
      words.replaceChildren(...parts.filter((part) => part !== ""));
    }
    const total = state.lines.length;
    $("transcript-count").textContent = !needle || !total
      ? ""
      : shown
        ? `${shown} of ${total} ${total === 1 ? "line" : "lines"} ${shown === 1 ? "matches" : "match"} “${query}”.`
        : `No line matches “${query}”.`;
  }

  function tagItem(tag) {
    const names = (tag.names || []).filter((name) => name !== tag.label);
    const percent = Math.round(100 * (tag.score || 0));
    return el(
      "li",
      { class: "tag", title: `${tag.label}: ${percent}%` },
      el("span", { class: "tag-name", text: tag.label }),
      names.length ? el("span", { class: "tag-label", text: names.join(" · ") }) : null,
      scoreOf(percent),
    );
  }

  function scoreOf(percent) {
    const bar = el("span", { class: "score-bar" });
    bar.style.width = `${Math.max(4, percent)}%`; // CSSOM: allowed by the CSP, unlike style=""
    return el(
      "span",
      { class: "score" },
      el("span", { class: "score-track", "aria-hidden": "true" }, bar),
      el("span", { class: "score-text", text: `${percent}%` }),
    );
  }

  function renderTags(tags) {
    const video = (tags && tags.video) || [];
    const list = $("tags");
    list.replaceChildren(...video.map(tagItem));
    if (!video.length) list.append(el("li", { class: "muted small", text: "Nothing was recognised." }));
    const segments = ((tags && tags.segments) || []).filter((s) => s.tags && s.tags.length);
    $("segment-tags-title").hidden = !segments.length;
    $("segment-tags").replaceChildren(
      ...segments.map((segment) =>
        timedItem(
          segment,
          segment.tags
            .slice(0, 3)
            .map((t) => {
              const name = (t.names || []).find((n) => n !== t.label);
              return `${t.label}${name ? ` (${name})` : ""} ${Math.round(100 * t.score)}%`;
            })
            .join(", "),
        ),
      ),
    );
  }

  function renderScreenText(items) {
    const list = $("screen-text");
    list.replaceChildren(...items.map((item) => timedItem(item, item.text, "screen")));
    if (!items.length) list.append(el("li", { class: "muted small", text: "No text was read on screen." }));
  }

  // A list item with its time span: a button that plays from its start.
  function timedItem(item, text, kind = "") {
    return el(
      "li",
      {},
      el(
        "button",
        {
          type: "button",
          class: `timed ${kind}`.trim(),
          "aria-label": `Play from ${clock(item.start)}: ${text}`,
          onclick: () => seek(item.start),
        },
        el("span", { class: "time", text: `${clock(item.start)}–${clock(item.end)}` }),
        el("span", { class: "text", text }),
      ),
    );
  }

  // --------------------------------------------------------------------------- tabs

  function selectTab(name, focus = true) {
    for (const tab of $("result").querySelectorAll('[role="tab"]')) {
      const on = tab.id === `tab-${name}`;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
      $(tab.getAttribute("aria-controls")).hidden = !on;
      if (on && focus) tab.focus();
    }
  }

  function setupTabs() {
    const tabs = [...$("result").querySelectorAll('[role="tab"]')];
    tabs.forEach((tab, index) => {
      tab.addEventListener("click", () => selectTab(tab.id.slice(4), false));
      tab.addEventListener("keydown", (event) => {
        const step = { ArrowRight: 1, ArrowLeft: -1, Home: -index, End: tabs.length - 1 - index }[event.key];
        if (step === undefined) return;
        event.preventDefault();
        const next = tabs[(index + step + tabs.length) % tabs.length];
        selectTab(next.id.slice(4));
      });
    });
  }

  // Media and captions: signed URLs from the API when it gives them (usable without the
  // Authorization header), else fetched with the header into blob: URLs.
  async function attachMedia(video, signal) {
    const player = $("player");
    const note = $("player-note");
    note.hidden = true;
    try {
      for (const name of trackNames(video)) {
        const link = (video.tracks || {})[name] || video.captions_url;
        const captions = link
          ? link
          : await blobUrl(
              `/v1/videos/${encodeURIComponent(video.id)}/captions?format=vtt&track=${name}`,
              signal,
            );
        if (signal.aborted) return;
        const language = name === "speech" ? video.transcript && video.transcript.language : "en";
        const track = el("track", {
          kind: name === "description" ? "captions" : "subtitles",
          label: trackLabel(video, name),
          srclang: language || "en",
          "data-track": name,
          default: name === state.track ? "" : null,
        });
        track.src = captions;
        track.addEventListener("load", () => {
          applyTrackModes();
          if (state.track === name) showFirstCue();
        });
        player.append(track);
        applyTrackModes();
      }
    } catch (error) {
      if (!signal.aborted) showError($("video-error"), error);
    }
    let source = video.media_url || null;
    if (!source && state.localFiles.has(video.id)) {
      source = URL.createObjectURL(state.localFiles.get(video.id));
      state.blobUrls.push(source);
    }
    if (!source) {
      try {
        source = await blobUrl(`/v1/videos/${encodeURIComponent(video.id)}/media`, signal);
      } catch (error) {
        if (signal.aborted) return;
        note.textContent = "This video cannot be shown here; its captions are below.";
        note.hidden = false;
        return;
      }
    }
    if (signal.aborted) return;
    if (video.playable === false) {
      // No browser-friendly copy (yet): it may still play; the error handler says if not.
      note.textContent =
        "This video's format may not play in your browser; its captions and segments are here all the same.";
      note.hidden = false;
    }
    player.src = source;
  }

  async function blobUrl(path, signal) {
    const response = await request(path, { signal });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw errorFrom(response.status, body, response.headers);
    }
    const url = URL.createObjectURL(await response.blob());
    state.blobUrls.push(url);
    return url;
  }

  // Chromium shows no cue on a paused video until its time changes; a seek to where it
  // stands shows the cue of the first frame (and marks its segment).
  function showFirstCue() {
    const player = $("player");
    if (player.readyState >= 1 && player.paused && !player.seeking) {
      player.currentTime = player.currentTime;
    }
  }

  function setupPlayer() {
    const player = $("player");
    player.addEventListener("timeupdate", () => highlight(player.currentTime));
    player.addEventListener("seeked", () => highlight(player.currentTime));
    $("track-select").addEventListener("change", (event) => chooseTrack(event.target.value));
    // The player's own subtitle menu: follow what it shows.
    player.textTracks.addEventListener("change", () => {
      if (!state.current || state.track === null) return;
      const showing = [...player.querySelectorAll("track")]
        .filter((t) => t.track.mode === "showing")
        .map((t) => t.dataset.track);
      // One track on, or none: the player's menu chose it. More: put ours back alone.
      if (showing.length === 1 && showing[0] !== state.track) chooseTrack(showing[0]);
      else if (!showing.length && state.track) chooseTrack("");
      else if (showing.length > 1) applyTrackModes();
    });
    $("transcript-find").addEventListener("input", findInTranscript);
    player.addEventListener("loadedmetadata", () => {
      applyTrackModes();
      showFirstCue();
    });
    player.addEventListener("error", () => {
      if (!player.getAttribute("src")) return;
      const note = $("player-note");
      note.textContent =
        "Your browser cannot play this video, but its captions and segments are below.";
      note.hidden = false;
    });
  }

  async function downloadCaptions(format) {
    const video = state.current;
    if (!video) return;
    const button = $(`download-${format}`);
    button.disabled = true;
    try {
      const tracks = trackNames(video);
      const track = state.track || tracks[0];
      const response = await request(
        `/v1/videos/${encodeURIComponent(video.id)}/captions?format=${format}&track=${track}`,
      );
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        throw errorFrom(response.status, body, response.headers);
      }
      const url = URL.createObjectURL(await response.blob());
      const stem = (video.filename || video.id).replace(/\.[^.]+$/, "") || video.id;
      const suffix = track === tracks[0] ? "" : `.${track}`;
      const link = el("a", { href: url, download: `${stem}${suffix}.${format}`, hidden: "" });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 30000);
    } catch (error) {
      showError($("video-error"), error);
    } finally {
      button.disabled = false;
    }
  }

  // --------------------------------------------------------------------------- questions

  async function loadQuestions(video, signal) {
    try {
      const { questions } = await api(`/v1/videos/${encodeURIComponent(video.id)}/questions`, {
        signal,
      });
      if (signal.aborted) return;
      $("qa-list").replaceChildren();
      for (const job of questions) addQuestion(job, signal);
    } catch (error) {
      if (!signal.aborted) showError($("question-error"), error);
    }
  }

  function addQuestion(job, signal) {
    const answer = el("p", { class: "a" });
    const item = el(
      "li",
      { class: "qa", "data-job": job.id },
      el("p", { class: "q", text: job.question || (job.result && job.result.question) || "" }),
      answer,
    );
    $("qa-list").append(item);
    renderAnswer(answer, job);
    if (!TERMINAL.has(job.state)) {
      followJob(job.id, (update) => renderAnswer(answer, update), signal).catch((error) => {
        if (signal.aborted) return;
        renderAnswer(answer, {
          state: "failed",
          error: { code: error.code || "network", message: error.message },
        });
      });
    }
    return item;
  }

  function renderAnswer(node, job) {
    node.classList.remove("pending", "failed");
    node.removeAttribute("aria-busy");
    if (job.state === "succeeded") {
      const result = job.result || {};
      node.textContent = result.answer || "(no answer)";
      const evidence = result.evidence || [];
      if (evidence.length) {
        // The moments the answer rests on: each one seeks the player there.
        node.append(
          el(
            "span",
            { class: "evidence" },
            ...evidence.map((item) =>
              el(
                "button",
                {
                  type: "button",
                  class: `moment ${item.kind}`,
                  title: `${item.kind} ${clock(item.start)}–${clock(item.end)}: ${item.snippet}`,
                  onclick: () => seek(item.start),
                },
                el("span", { class: "time", text: clock(item.start) }),
                el("span", { class: "kind", text: item.kind }),
                el("span", { class: "snippet", text: item.snippet }),
              ),
            ),
          ),
        );
      }
    } else if (job.state === "failed" || job.state === "canceled") {
      node.classList.add("failed");
      const error = job.error || { code: job.state, message: job.state };
      node.textContent = describe(new ApiError(error.code, error.message)).text;
    } else {
      node.classList.add("pending");
      node.setAttribute("aria-busy", "true");
      node.textContent = job.state === "queued" ? "Waiting for a worker…" : "Thinking…";
    }
  }

  async function ask(event) {
    event.preventDefault();
    const video = state.current;
    const input = $("question-input");
    const question = input.value.trim();
    if (!video || !question || !state.follow) return;
    const signal = state.follow.signal;
    const button = event.submitter || $("question-form").querySelector("button");
    clearError($("question-error"));
    button.disabled = true;
    try {
      const job = await api(`/v1/videos/${encodeURIComponent(video.id)}/questions`, {
        method: "POST",
        json: { question },
        signal,
      });
      input.value = "";
      addQuestion(job, signal);
    } catch (error) {
      if (!signal.aborted) showError($("question-error"), error);
    } finally {
      button.disabled = false;
      input.focus();
    }
  }

  // --------------------------------------------------------------------------- the list

  function upsertVideo(video, first = false) {
    const at = state.videos.findIndex((v) => v.id === video.id);
    if (at >= 0) state.videos[at] = { ...state.videos[at], ...video };
    else if (first) state.videos.unshift(video);
    else return;
    renderList();
  }

  function removeVideo(videoId) {
    state.videos = state.videos.filter((v) => v.id !== videoId);
    state.localFiles.delete(videoId);
    renderList();
  }

  function renderList() {
    const list = $("videos");
    const current = state.current && state.current.id;
    // Keep the keyboard focus on the same button when the list is drawn again.
    const focused = list.contains(document.activeElement) ? document.activeElement : null;
    const refocus = focused && [focused.dataset.video, focused.className];
    list.replaceChildren(
      ...state.videos.map((video) => {
        const title = titleOf(video);
        const badge = el("span");
        setBadge(badge, video.status);
        const facts = [video.media && video.media.duration_s ? clock(video.media.duration_s) : null, when(video.created_at)]
          .filter(Boolean)
          .join(" · ");
        return el(
          "li",
          { class: video.id === current ? "video-item current" : "video-item" },
          el(
            "button",
            {
              type: "button",
              class: "video-open",
              "aria-current": video.id === current ? "true" : null,
              "data-video": video.id,
              title,
              onclick: () => openById(video.id),
            },
            el("span", { class: "title", text: title }),
            el("span", { class: "sub" }, badge, el("span", { text: facts })),
          ),
          el("button", {
            type: "button",
            class: "danger-quiet",
            "data-video": video.id,
            "aria-label": `Delete ${title}`,
            text: "Delete",
            onclick: () => confirmDelete(video),
          }),
        );
      }),
    );
    if (refocus) {
      const again = [...list.querySelectorAll("button")].find(
        (b) => b.dataset.video === refocus[0] && b.className === refocus[1],
      );
      if (again) again.focus();
    }
    $("videos-empty").hidden = state.videos.length > 0;
    $("more").hidden = !state.cursor;
  }

  async function refreshList() {
    clearError($("library-error"));
    $("library-status").textContent = "";
    try {
      const page = await api(`/v1/videos?limit=${PAGE_SIZE}`);
      state.videos = page.videos;
      state.cursor = page.next_cursor;
      renderList();
    } catch (error) {
      showError($("library-error"), error);
    }
  }

  async function loadMore() {
    if (!state.cursor) return;
    const button = $("more");
    button.disabled = true;
    try {
      const page = await api(
        `/v1/videos?limit=${PAGE_SIZE}&cursor=${encodeURIComponent(state.cursor)}`,
      );
      const known = new Set(state.videos.map((v) => v.id));
      state.videos.push(...page.videos.filter((v) => !known.has(v.id)));
      state.cursor = page.next_cursor;
      renderList();
    } catch (error) {
      showError($("library-error"), error);
    } finally {
      button.disabled = false;
    }
  }

  function confirmDelete(video) {
    state.pendingDelete = video;
    $("confirm-name").textContent = titleOf(video);
    $("confirm-delete").showModal();
  }

  async function deleteVideo(video) {
    clearError($("library-error"));
    try {
      await api(`/v1/videos/${encodeURIComponent(video.id)}`, { method: "DELETE" });
    } catch (error) {
      if (!(error instanceof ApiError && error.code === "video_not_found")) {
        showError($("library-error"), error);
        return;
      }
    }
    if (state.current && state.current.id === video.id) closeVideo();
    removeVideo(video.id);
    $("library-status").textContent = `Deleted “${titleOf(video)}”.`;
    $("library-title").setAttribute("tabindex", "-1");
    $("library-title").focus();
  }

  // --------------------------------------------------------------------------- wiring

  function init() {
    $("key-form").addEventListener("submit", submitKey);
    $("forget-key").addEventListener("click", () => {
      forgetKey();
      closeVideo();
      state.videos = [];
      state.cursor = null;
      renderList();
      askForKey(null);
    });
    $("boot-retry").addEventListener("click", boot);
    $("url-form").addEventListener("submit", fetchUrl);
    $("question-form").addEventListener("submit", ask);
    $("download-vtt").addEventListener("click", () => downloadCaptions("vtt"));
    $("download-srt").addEventListener("click", () => downloadCaptions("srt"));
    $("refresh").addEventListener("click", refreshList);
    $("more").addEventListener("click", loadMore);
    $("confirm-delete").addEventListener("close", () => {
      const video = state.pendingDelete;
      state.pendingDelete = null;
      if (video && $("confirm-delete").returnValue === "delete") deleteVideo(video);
    });
    setupDrop();
    setupPlayer();
    setupTabs();
    boot();
  }

  // For tests and the curious: the page's state, read-only by convention.
  window.vidcap = { state };

  init();
})();
