// serkit page: choose a model, upload or record a clip, show what /api/predict says.
// Plain JavaScript, no build step, no third-party code.
"use strict";

(function () {
  const settings = JSON.parse(document.getElementById("settings").textContent);
  const $ = (id) => document.getElementById(id);
  const el = {
    model: $("model"), modelHint: $("model-hint"), file: $("file"), fileHint: $("file-hint"),
    drop: $("drop"), record: $("record"), recordText: $("record-text"), recordTime: $("record-time"),
    clip: $("clip"), clipName: $("clip-name"), player: $("player"),
    status: $("status"), error: $("error"), result: $("result"),
    emotion: $("emotion"), confidence: $("confidence"), bars: $("bars"),
    metaModel: $("meta-model"), metaDuration: $("meta-duration"), metaServer: $("meta-server"),
    metaTotal: $("meta-total"), timelineBlock: $("timeline-block"), timeline: $("timeline"),
    timelineHint: $("timeline-hint"), timelineEnd: $("timeline-end"), legend: $("legend"),
    timelineEmpty: $("timeline-empty"), vad: $("vad"),
  };

  const TARGET_RATE = 16000;
  const COLORS = {
    angry: "#d64541", happy: "#e5a50a", sad: "#3b6fd4", fearful: "#8e5bd0", disgust: "#3d9a50",
    neutral: "#7d8590", surprised: "#ee7b30", calm: "#1f9e9e", boredom: "#a07850",
  };
  const PALETTE = ["#c2185b", "#00897b", "#5e35b1", "#f4511e", "#6d4c41", "#039be5"];
  const colorOf = (label, i) => COLORS[label] || PALETTE[i % PALETTE.length];
  const pct = (p) => `${(100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;
  const mb = (bytes) => `${Math.round(bytes / 1048576)} MB`;
  const secs = (s) => (s < 10 ? s.toFixed(1) : Math.round(s)) + " s";

  // -- model choice ----------------------------------------------------------------------------
  for (const m of settings.models) {
    const opt = document.createElement("option");
    opt.value = m.name;
    opt.textContent = m.name;
    opt.selected = m.name === settings.default;
    el.model.append(opt);
  }
  const currentModel = () => settings.models.find((m) => m.name === el.model.value) || settings.models[0];
  function describeModel() {
    const m = currentModel();
    el.modelHint.textContent = `${m.labels.length} emotions: ${m.labels.join(", ")} · ${m.window_s} s windows`;
  }
  el.model.addEventListener("change", describeModel);
  describeModel();
  el.fileHint.textContent = `WAV, FLAC, OGG, MP3 or AIFF, up to ${mb(settings.max_upload_bytes)} and ` +
    `${settings.max_seconds} s; other formats your browser plays are converted first.`;

  // -- showing state ---------------------------------------------------------------------------
  let busy = false;
  function setBusy(on, text) {
    busy = on;
    el.file.disabled = on;
    el.model.disabled = on;
    el.vad.disabled = on;
    el.drop.classList.toggle("disabled", on);
    if (!recording) el.record.disabled = on || !canRecord;
    if (text) el.status.textContent = text;
    el.result.closest("section").setAttribute("aria-busy", on ? "true" : "false");
  }
  function showError(message) {
    el.error.textContent = message;
    el.error.hidden = false;
    el.result.hidden = true;
    el.status.textContent = "No result.";
  }
  function clearError() {
    el.error.hidden = true;
    el.error.textContent = "";
  }
  function showClip(blob, name) {
    if (el.player.src) URL.revokeObjectURL(el.player.src);
    el.player.src = URL.createObjectURL(blob);
    el.clipName.textContent = name;
    el.clip.hidden = false;
  }

  function showResult(r, roundTripMs) {
    const labels = Object.keys(r.probabilities);
    el.emotion.textContent = r.emotion;
    el.emotion.style.setProperty("--emotion-color", colorOf(r.emotion, labels.indexOf(r.emotion)));
    el.confidence.textContent = `${pct(r.confidence)} confidence`;
    el.bars.replaceChildren(...labels.map((label, i) => {
      const p = r.probabilities[label];
      const li = document.createElement("li");
      li.className = "bar" + (label === r.emotion ? " is-top" : "");
      const name = document.createElement("span");
      name.className = "bar-label";
      name.textContent = label;
      const track = document.createElement("span");
      track.className = "bar-track";
      track.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.className = "bar-fill";
      fill.style.width = `${(100 * p).toFixed(2)}%`;
      fill.style.backgroundColor = colorOf(label, i);
      track.append(fill);
      const value = document.createElement("span");
      value.className = "bar-value";
      value.textContent = pct(p);
      li.append(name, track, value);
      return li;
    }));
    el.metaModel.textContent = r.model;
    el.metaDuration.textContent = `${r.duration_s.toFixed(2)} s`;
    el.metaServer.textContent = `${Math.round(r.elapsed_ms)} ms`;
    el.metaTotal.textContent = `${Math.round(roundTripMs)} ms`;
    showTimeline(r, labels);
    el.result.hidden = false;
    el.status.textContent = `Predicted ${r.emotion} (${pct(r.confidence)}) with ${r.model}.`;
  }

  // The strip spans the clip; each segment (a speech segment found by the server's VAD, or a
  // fixed window) is a cell placed at its start and end, so pauses show as gaps.
  function showTimeline(r, labels) {
    const t = r.timeline || [];
    el.timelineBlock.hidden = !r.vad;
    if (!r.vad) return;
    const span = Math.max(r.duration_s, 0.001);
    const at = (s) => `${(100 * Math.min(Math.max(s / span, 0), 1)).toFixed(3)}%`;
    el.timeline.replaceChildren(...t.map((w) => {
      const li = document.createElement("li");
      li.className = "cell";
      li.style.left = at(w.start);
      li.style.width = `calc(${at(w.end)} - ${at(w.start)})`;
      li.style.backgroundColor = colorOf(w.emotion, labels.indexOf(w.emotion));
      const text = `${w.start.toFixed(1)}–${w.end.toFixed(1)} s: ${w.emotion} ${pct(w.confidence)}`;
      li.title = text;
      li.setAttribute("aria-label", text);
      li.tabIndex = 0;
      return li;
    }));
    el.timelineEnd.textContent = `${r.duration_s.toFixed(1)} s`;
    const n = t.length;
    el.timelineHint.textContent = r.vad === "none"
      ? `(${n} windows of ${r.window_s} s)`
      : `(${n} speech segment${n === 1 ? "" : "s"}, ${secs(r.speech_s)} of speech; ${r.vad} VAD)`;
    el.timelineEmpty.hidden = n > 0;
    el.timelineEmpty.textContent = n ? "" : `The ${r.vad} voice-activity detector found no speech in this clip.`;
    const seen = [...new Set(t.map((w) => w.emotion))];
    el.legend.replaceChildren(...seen.map((label) => {
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.backgroundColor = colorOf(label, labels.indexOf(label));
      li.append(swatch, document.createTextNode(label));
      return li;
    }));
  }

  // -- talking to the API ----------------------------------------------------------------------
  async function post(blob, filename) {
    const form = new FormData();
    form.append("file", blob, filename);
    form.append("model", el.model.value);
    form.append("vad", el.vad.value);
    const started = performance.now();
    let response;
    try {
      response = await fetch("api/predict", { method: "POST", body: form, headers: { Accept: "application/json" } });
    } catch (e) {
      return { ok: false, status: 0, body: { message: "The server cannot be reached. Is it still running?" } };
    }
    let body;
    try {
      body = await response.json();
    } catch (e) {
      body = { message: `The server answered ${response.status} ${response.statusText} without details.` };
    }
    return { ok: response.ok, status: response.status, body, ms: performance.now() - started };
  }

  async function analyse(blob, filename) {
    if (busy) return;
    clearError();
    showClip(blob, filename);
    if (blob.size > settings.max_upload_bytes) {
      showError(`The file is ${mb(blob.size)}; this server takes at most ${mb(settings.max_upload_bytes)}.`);
      return;
    }
    if (blob.size === 0) {
      showError("The file is empty.");
      return;
    }
    setBusy(true, `Analysing ${filename}…`);
    try {
      let r = await post(blob, filename);
      // A format the server cannot read (WebM, M4A…) but this browser can: convert it here.
      if (!r.ok && r.status === 415 && r.body.error === "unsupported_format") {
        setBusy(true, `Converting ${filename} to WAV in the browser…`);
        const wav = await toWav(blob).catch(() => null);
        if (wav) r = await post(wav, filename.replace(/\.[^.]*$/, "") + ".wav");
      }
      if (r.ok) showResult(r.body, r.ms);
      else showError(r.body.message || `The server answered ${r.status}.`);
    } finally {
      setBusy(false);
    }
  }

  // -- file input and drag and drop ------------------------------------------------------------
  el.file.addEventListener("change", () => {
    const f = el.file.files[0];
    if (f) analyse(f, f.name);
    el.file.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    el.drop.addEventListener(type, (e) => {
      e.preventDefault();
      if (!busy) el.drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "dragend"]) {
    el.drop.addEventListener(type, () => el.drop.classList.remove("over"));
  }
  el.drop.addEventListener("drop", (e) => {
    e.preventDefault();
    el.drop.classList.remove("over");
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) analyse(f, f.name);
  });
  // A file dropped outside the zone must not replace the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  // -- audio in the browser: decode, mix to mono, resample, encode 16-bit WAV -------------------
  async function toWav(blob) {
    const Offline = window.OfflineAudioContext || window.webkitOfflineAudioContext;
    if (!Offline) throw new Error("no Web Audio");
    const decoded = await new Offline(1, 1, TARGET_RATE).decodeAudioData(await blob.arrayBuffer());
    const n = Math.ceil(decoded.duration * TARGET_RATE);
    const ctx = new Offline(1, Math.max(n, 1), TARGET_RATE);   // one output channel: mixes to mono
    const src = ctx.createBufferSource();
    src.buffer = decoded;
    src.connect(ctx.destination);
    src.start();
    const rendered = await ctx.startRendering();
    return encodeWav(rendered.getChannelData(0), TARGET_RATE);
  }

  function encodeWav(samples, rate) {
    const buffer = new ArrayBuffer(44 + samples.length * 2);
    const v = new DataView(buffer);
    const ascii = (at, s) => { for (let i = 0; i < s.length; i++) v.setUint8(at + i, s.charCodeAt(i)); };
    ascii(0, "RIFF"); v.setUint32(4, 36 + samples.length * 2, true); ascii(8, "WAVE");
    ascii(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
    v.setUint32(24, rate, true); v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true);
    v.setUint16(34, 16, true); ascii(36, "data"); v.setUint32(40, samples.length * 2, true);
    for (let i = 0, at = 44; i < samples.length; i++, at += 2) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      v.setInt16(at, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
    return new Blob([buffer], { type: "audio/wav" });
  }

  // -- recording -------------------------------------------------------------------------------
  const canRecord = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.MediaRecorder);
  let recording = null;   // {recorder, stream, chunks, started, timer}
  if (!canRecord) {
    el.record.disabled = true;
    $("record-hint").textContent = window.isSecureContext
      ? "This browser cannot record audio."
      : "Recording needs a secure page: open it as https:// or on localhost.";
  }

  async function startRecording() {
    clearError();
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false } });
    } catch (e) {
      showError(e && e.name === "NotAllowedError"
        ? "The browser was not allowed to use the microphone."
        : "No microphone could be opened.");
      return;
    }
    let recorder;
    try {
      recorder = new MediaRecorder(stream);
    } catch (e) {
      stream.getTracks().forEach((t) => t.stop());
      showError("This browser cannot record from the microphone.");
      return;
    }
    const rec = { recorder, stream, chunks: [], started: performance.now(), timer: 0 };
    recorder.addEventListener("dataavailable", (e) => { if (e.data.size) rec.chunks.push(e.data); });
    recorder.addEventListener("stop", () => finishRecording(rec));
    recorder.start();
    recording = rec;
    showRecording(true);
    el.status.textContent = "Recording…";
    rec.timer = setInterval(() => {
      const s = (performance.now() - rec.started) / 1000;
      el.recordTime.textContent = `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
      if (s >= settings.max_seconds - 0.5) stopRecording();
    }, 200);
  }

  function showRecording(on) {
    el.record.setAttribute("aria-pressed", String(on));
    el.record.classList.toggle("recording", on);
    el.recordText.textContent = on ? "Stop recording" : "Record a clip";
    if (!on) el.recordTime.textContent = "";
    el.file.disabled = on;
  }

  function stopRecording() {
    if (!recording) return;
    clearInterval(recording.timer);
    if (recording.recorder.state !== "inactive") recording.recorder.stop();
  }

  async function finishRecording(rec) {
    rec.stream.getTracks().forEach((t) => t.stop());
    recording = null;
    showRecording(false);
    const raw = new Blob(rec.chunks, { type: rec.recorder.mimeType || "audio/webm" });
    setBusy(true, "Encoding the recording…");
    let wav;
    try {
      wav = await toWav(raw);
    } catch (e) {
      setBusy(false);
      showError("The recording could not be converted to WAV in this browser.");
      return;
    }
    setBusy(false);
    analyse(wav, "recording.wav");
  }

  el.record.addEventListener("click", () => (recording ? stopRecording() : startRecording()));
})();
