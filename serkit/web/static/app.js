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
    status: $("status"), elapsed: $("elapsed"), cancel: $("cancel"), error: $("error"), result: $("result"),
    emotion: $("emotion"), confidence: $("confidence"), bars: $("bars"),
    metaModel: $("meta-model"), metaDuration: $("meta-duration"), metaServer: $("meta-server"),
    metaTotal: $("meta-total"), timelineBlock: $("timeline-block"), timeline: $("timeline"),
    timelineHint: $("timeline-hint"), legend: $("legend"),
    timelineEmpty: $("timeline-empty"), vad: $("vad"), vadHint: $("vad-hint"), ticks: $("ticks"),
    voiceField: $("voice-field"), voiceHint: $("voice-hint"), sameSpeaker: $("same-speaker"),
    voicesField: $("voices-field"), severalVoices: $("several-voices"),
    readout: $("readout"), segments: $("segments"), progress: $("progress"), resultCard: $("result-card"),
  };

  const TARGET_RATE = 16000;
  // One palette, defined in serkit/display.py and shared with the PNG timeline plot.
  const colorOf = (label, i) => settings.colors[label] || settings.extra_colors[Math.max(i, 0) % settings.extra_colors.length];
  const pct = (p) => `${(100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;
  // Sizes in MiB, as the server states its limit ("20 MiB", "0.954 MiB"); two sizes get as many
  // digits as it takes to tell them apart ("20.0001 MiB" against "20 MiB"), else exact bytes.
  const MiB = 1048576;
  const mib = (bytes, digits = 3) => `${+(bytes / MiB).toPrecision(digits)} MiB`;
  function twoSizes(a, b) {
    for (let d = 3; d <= 7; d++) if (mib(a, d) !== mib(b, d)) return [mib(a, d), mib(b, d)];
    return [a, b].map((n) => `${n.toLocaleString("en")} bytes`);
  }
  const secs = (s) => (s < 10 ? s.toFixed(1) : Math.round(s)) + " s";
  // A time on the clip: "4.5 s" in short clips, "1:04.5" from a minute on.
  const clock = (s, long, digits = 1) => {
    if (!long) return s.toFixed(digits);
    const m = Math.floor(s / 60), rest = s - 60 * m;
    return `${m}:${rest < 10 ? "0" : ""}${rest.toFixed(digits)}`;
  };
  const span = (a, b, long) => long ? `${clock(a, true)}–${clock(b, true)}` : `${a.toFixed(1)}–${b.toFixed(1)} s`;
  const reducedMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  const HOW_FOUND = { silero: "found by a speech detector", energy: "found by loudness" };

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
    const h = m.held_out || {};
    let trust = "";
    if (h.accuracy !== undefined && h.n !== undefined) {
      trust = ` On ${h.n} clips of speakers it never heard, it was right ${pct(h.accuracy)} of the time`;
      trust += h.flagged_right !== undefined && h.unflagged_right !== undefined
        ? `: ${pct(h.unflagged_right)} of its sure answers, ${pct(h.flagged_right)} of those marked uncertain.` : ".";
    }
    el.modelHint.textContent = `${m.labels.length} emotions: ${m.labels.join(", ")}. It listens to ` +
      `${m.window_s} seconds at a time, to the speech only; a clip without speech gets no emotion.` + trust;
    el.vadHint.textContent = `For clips longer than ${m.window_s} seconds, the timeline follows the ` +
      `stretches of speech (pauses skipped) or cuts equal ${m.window_s}-second pieces (pauses included, digital silence left out). ` +
      "The overall emotion weighs each stretch or piece by its length.";
    // "One voice" only for a model that can adapt (one with a speaker head)
    el.voiceField.hidden = el.voiceHint.hidden = !m.can_adapt;
    el.voicesField.hidden = !m.can_tell_voices;         // and "Several voices" where the server can tell them apart
  }
  describeModel();
  el.fileHint.textContent = `WAV, FLAC, OGG, MP3 or AIFF, up to ${mib(settings.max_upload_bytes)} and ` +
    `${settings.max_seconds} s; other formats your browser plays are converted first.`;

  // -- showing state ---------------------------------------------------------------------------
  let busy = false;
  let held = null;          // {blob, name}: the clip on show, analysed again when a setting changes
  let ticker = 0;
  function setBusy(on, text) {
    busy = on;
    el.file.disabled = on || !!recording || !!opening;
    el.model.disabled = on;
    el.vad.disabled = on;
    el.sameSpeaker.disabled = on;
    el.severalVoices.disabled = on;
    el.drop.classList.toggle("disabled", on || !!recording || !!opening);
    if (!recording && !opening) el.record.disabled = on || !canRecord;
    el.cancel.hidden = !on;
    // The status line is announced once per step; the seconds tick in a line of their own that
    // screen readers skip (aria-hidden), so they do not read the status out again every second.
    if (text) el.status.textContent = text;
    el.progress.hidden = !on;
    el.result.classList.toggle("stale", on);      // the previous result stays, dimmed, until the new one
    el.resultCard.setAttribute("aria-busy", on ? "true" : "false");
    clearInterval(ticker);
    el.elapsed.textContent = "";
    if (on) {
      const started = performance.now();
      ticker = setInterval(() => {
        el.elapsed.textContent = `${Math.floor((performance.now() - started) / 1000)} s`;
      }, 1000);
    }
  }

  // One job at a time (encoding a recording, sending a clip, converting it): starting one aborts
  // the one in flight, and only the latest job may show its reply or end the busy state, so a
  // slow reply that arrives late never replaces a newer one.
  let job = null;           // {controller, name, returnTo}
  function begin(text, name, returnTo = null) {
    if (job) job.controller.abort();
    job = { controller: new AbortController(), name, returnTo };
    setBusy(true, text);
    return job;
  }
  const current = (j) => job === j;
  function end(j) {
    if (!current(j)) return;
    job = null;
    setBusy(false);
  }
  function cancel() {
    const j = job;
    if (!j) return;
    j.controller.abort();
    end(j);
    el.status.textContent = `Cancelled: ${j.name} was not analysed.`;
    const back = j.returnTo && j.returnTo !== document.body && !j.returnTo.disabled ? j.returnTo : el.file;
    back.focus();
  }
  el.cancel.addEventListener("click", cancel);
  // Bring what just arrived into view (on a phone the result card is below the fold) and move
  // the focus there, so keyboard and screen-reader users land on it too.
  // After a changed setting the focus stays on that setting (arrow keys may still be moving it).
  let keepFocus = false;
  function reveal(target) {
    const box = target.getBoundingClientRect();
    if (box.top < 0 || box.top > window.innerHeight - 80) {    // its card's top, heading and all
      el.resultCard.scrollIntoView({ block: "start", behavior: reducedMotion ? "auto" : "smooth" });
    }
    if (!keepFocus) target.focus({ preventScroll: true });
  }
  function showError(message) {
    el.error.textContent = message;
    el.error.hidden = false;
    el.result.hidden = true;
    hideClip();                     // no player left for a clip that gave no result
    el.status.textContent = "No result.";
    reveal(el.error);
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
  function hideClip() {
    stopSegment();
    if (el.player.src) URL.revokeObjectURL(el.player.src);
    el.player.removeAttribute("src");
    el.player.load();
    el.clip.hidden = true;
    held = null;
  }

  function showResult(r, roundTripMs) {
    const labels = Object.keys(r.probabilities);
    if (r.emotion === null) {            // no speech found: no emotion, the reason instead
      el.emotion.textContent = "No speech";
      el.emotion.style.setProperty("--emotion-color", "#7d8590");
      el.confidence.textContent = r.reason ? r.reason.charAt(0).toUpperCase() + r.reason.slice(1) + "." : "";
    } else {
      el.emotion.textContent = r.emotion;
      el.emotion.style.setProperty("--emotion-color", colorOf(r.emotion, labels.indexOf(r.emotion)));
      const flaggedRight = ((settings.models.find((m) => m.name === r.model) || {}).held_out || {}).flagged_right;
      el.confidence.textContent = `${pct(r.confidence)} confidence` +
        (r.uncertain ? " (uncertain: the top emotions are close, or none is likely" +
          (flaggedRight !== undefined ? `; on speakers it never heard, such answers were right ${pct(flaggedRight)} of the time)` : ")")
          : "");
    }
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
    el.metaDuration.textContent = `${r.duration_s.toFixed(3)} s`;
    el.metaServer.textContent = `${Math.round(r.elapsed_ms)} ms`;
    el.metaTotal.textContent = `${Math.round(roundTripMs)} ms`;
    el.result.hidden = false;
    showTimeline(r, labels);
    el.status.textContent = r.emotion === null ? `No speech found (${r.model} model).`
      : `Predicted ${r.emotion} (${pct(r.confidence)}) with the ${r.model} model.`;
    // "One voice" asked for, but a single stretch of speech has no other to compare the voice with
    if (r.emotion !== null && !r.adapted && r.voices === null && el.sameSpeaker.checked && currentModel().can_adapt) {
      el.status.textContent += " Not adapted to the voice: it needs two stretches of speech or more.";
    }
    if (r.note) el.status.textContent += ` ${r.note}`;   // e.g. a WAV cut short, scored on what it holds
    reveal(el.result);
  }

  // -- the timeline: a strip of the whole clip, ticks, a readout and a list of its segments ------
  // Each segment (a stretch of speech, or a fixed piece) is a cell placed at its start and end, so
  // pauses show as gaps; its colour is its emotion, its strength the confidence. Cells and list
  // rows play their segment; the strip is one tab stop, arrow keys move within it.
  let shown = { segments: [], duration: 0, long: false, labels: [] };
  function showTimeline(r, labels) {
    const t = r.timeline || [];
    stopSegment();
    const long = r.duration_s > r.window_s;   // clips of one window have no timeline
    // A silent clip, or one too short for speech, is answered before any speech is looked for: no
    // strip and no advice to cut it in equal pieces (pieces of digital silence are left out too).
    const nothing = r.emotion === null && /\b(silent|shorter than)\b/.test(r.reason || "");
    el.timelineBlock.hidden = !long || nothing;
    if (el.timelineBlock.hidden) return;
    shown = { segments: t, duration: Math.max(r.duration_s, 0.001), long: r.duration_s >= 60, labels };
    const at = (s) => `${(100 * Math.min(Math.max(s / shown.duration, 0), 1)).toFixed(3)}%`;
    el.timeline.replaceChildren(...t.map((w, i) => {
      const cell = document.createElement("button");
      cell.type = "button";
      cell.className = "cell";
      cell.style.left = at(w.start);
      cell.style.width = `calc(${at(w.end)} - ${at(w.start)})`;
      cell.style.backgroundColor = tint(colorOf(w.emotion, labels.indexOf(w.emotion)), strength(w.confidence, labels.length));
      cell.setAttribute("aria-label", describe(w));
      cell.tabIndex = i === 0 ? 0 : -1;
      cell.dataset.index = String(i);
      return cell;
    }));
    el.segments.replaceChildren(...t.map((w, i) => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "segment";
      b.dataset.index = String(i);
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.backgroundColor = colorOf(w.emotion, labels.indexOf(w.emotion));
      const time = document.createElement("span");
      time.className = "segment-time";
      time.textContent = span(w.start, w.end, shown.long) + (w.voice === undefined ? "" : ` · voice ${voiceName(w.voice)}`);
      const emotion = document.createElement("span");
      emotion.className = "segment-emotion";
      emotion.textContent = w.emotion + (w.uncertain ? "?" : "");
      if (w.uncertain) emotion.title = "uncertain: the top emotions are close, or none is likely";
      const value = document.createElement("span");
      value.className = "segment-value";
      value.textContent = pct(w.confidence);
      b.append(swatch, time, emotion, value);
      b.setAttribute("aria-label", `Play ${describe(w)}`);
      li.append(b);
      return li;
    }));
    drawTicks();
    const n = t.length;
    el.timelineHint.textContent = r.vad === "none"
      ? `(${n} piece${n === 1 ? "" : "s"} of ${r.window_s} s)`
      : `(${n} stretch${n === 1 ? "" : "es"} of speech, ${secs(r.speech_s)} in all, ${HOW_FOUND[r.vad] || r.vad})`;
    // Voices are told apart by the sound of them (clustering): one speaker is often split in two or
    // more, so the count is given as what it is, a rough one.
    if (r.voices) {
      el.timelineHint.textContent += `, ${r.voices} voice${r.voices === 1 ? "" : "s"} told apart ` +
        "(roughly: one speaker can be split into several)";
    } else if (r.adapted) el.timelineHint.textContent += ", judged as one voice";
    el.timelineEmpty.hidden = n > 0;
    el.timelineEmpty.textContent = n ? "" : r.vad === "none"
      ? "Every piece of this clip is silent or too short: there is nothing to score."
      : `No speech was found in this clip (${HOW_FOUND[r.vad] || r.vad}). ` +
        "Choose “Equal pieces” under Long recordings to see every part of it.";
    el.readout.textContent = n ? "Choose a segment to hear it; paler means less sure." : "";
    el.readout.classList.add("is-idle");
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

  function describe(w) {
    const others = Object.entries(w.probabilities).filter(([k]) => k !== w.emotion)
      .sort((a, b) => b[1] - a[1]).slice(0, 2).map(([k, v]) => `${k} ${pct(v)}`).join(", ");
    return `${span(w.start, w.end, shown.long)}` + (w.voice === undefined ? "" : ` (voice ${voiceName(w.voice)})`) +
      `: ${w.emotion} ${pct(w.confidence)}` + (others ? ` (then ${others})` : "");
  }
  // Voices told apart are numbered 0, 1, ... by the API; shown as A, B, ...
  function voiceName(k) { return k < 26 ? String.fromCharCode(65 + k) : String(k + 1); }
  // Confidence from chance (1 / number of labels) to certainty as opacity from 0.35 to 1.
  function strength(confidence, n) {
    const chance = 1 / Math.max(n, 2);
    return 0.35 + 0.65 * Math.min(Math.max((confidence - chance) / (1 - chance), 0), 1);
  }
  function tint(hex, alpha) {
    const v = parseInt(hex.slice(1), 16);
    return `rgba(${(v >> 16) & 255}, ${(v >> 8) & 255}, ${v & 255}, ${alpha.toFixed(3)})`;
  }

  // Ticks at a round step that leaves about 60 px between labels at the strip's current width.
  const STEPS = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];
  function drawTicks() {
    const width = el.timeline.clientWidth;
    if (!width || el.timelineBlock.hidden) return;
    const d = shown.duration;
    const most = Math.max(2, Math.floor(width / 60));
    const step = STEPS.find((s) => d / s <= most) || STEPS[STEPS.length - 1];
    const ticks = [];
    for (let s = 0; s <= d + 1e-9; s += step) ticks.push(s);
    el.ticks.replaceChildren(...ticks.map((s) => {
      const tick = document.createElement("span");
      const x = s / d;
      tick.className = "tick" + (x === 0 ? " is-first" : x > 0.94 ? " is-last" : "");
      tick.style.left = `${(100 * x).toFixed(3)}%`;
      tick.textContent = shown.long ? clock(s, true, 0) : `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
      return tick;
    }));
  }
  if (window.ResizeObserver) new ResizeObserver(() => drawTicks()).observe(el.timeline);

  function readout(i) {
    const w = shown.segments[i];
    if (!w) return;
    el.readout.textContent = describe(w);
    el.readout.classList.remove("is-idle");
  }
  function indexOf(target) {
    const owner = target && target.closest("[data-index]");
    return owner ? Number(owner.dataset.index) : -1;
  }
  el.timeline.addEventListener("click", (e) => { const i = indexOf(e.target); if (i >= 0) playSegment(i); });
  el.segments.addEventListener("click", (e) => { const i = indexOf(e.target); if (i >= 0) playSegment(i); });
  el.timeline.addEventListener("focusin", (e) => readout(indexOf(e.target)));
  el.segments.addEventListener("focusin", (e) => readout(indexOf(e.target)));
  el.timeline.addEventListener("mouseover", (e) => readout(indexOf(e.target)));
  el.timeline.addEventListener("keydown", (e) => {
    const i = indexOf(e.target), n = shown.segments.length;
    if (i < 0 || !n) return;
    const to = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0, End: n - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    focusCell(Math.min(Math.max(to, 0), n - 1));
  });
  function focusCell(i) {
    const cells = el.timeline.children;
    for (const c of cells) c.tabIndex = -1;
    cells[i].tabIndex = 0;
    cells[i].focus();
  }

  // Playing one segment: seek, play, pause at its end; the rows and cells show what is playing.
  let segmentEnd = null;
  function playSegment(i) {
    const w = shown.segments[i];
    if (!w || el.clip.hidden) return;
    segmentEnd = w.end;
    el.player.currentTime = w.start;
    const playing = el.player.play();
    if (playing && playing.catch) playing.catch(() => { segmentEnd = null; });
    markPlaying(i);
    readout(i);
  }
  function stopSegment() {
    segmentEnd = null;
    markPlaying(-1);
  }
  function markPlaying(i) {
    for (const group of [el.timeline.children, el.segments.querySelectorAll(".segment")]) {
      for (const node of group) {
        const on = Number(node.dataset.index) === i;
        node.classList.toggle("is-playing", on);
        if (on) node.setAttribute("aria-current", "true");
        else node.removeAttribute("aria-current");
      }
    }
  }
  el.player.addEventListener("timeupdate", () => {
    const now = el.player.currentTime;
    if (segmentEnd !== null && now >= segmentEnd) {
      el.player.pause();
      segmentEnd = null;
    }
    if (!el.player.paused) markPlaying(shown.segments.findIndex((w) => now >= w.start && now < w.end));
  });
  el.player.addEventListener("pause", () => { if (segmentEnd === null) markPlaying(-1); });

  // -- talking to the API ----------------------------------------------------------------------
  async function post(blob, filename, signal) {
    const form = new FormData();
    form.append("file", blob, filename);
    form.append("model", el.model.value);
    form.append("vad", el.vad.value);
    if (currentModel().can_tell_voices && el.severalVoices.checked) {
      form.append("same_speaker", "true");
      form.append("speakers", "voice");
    } else if (currentModel().can_adapt && el.sameSpeaker.checked) form.append("same_speaker", "true");
    const started = performance.now();
    let response, body;
    try {
      response = await fetch("api/predict", { method: "POST", body: form, headers: { Accept: "application/json" }, signal });
    } catch (e) {
      if (signal.aborted) return { aborted: true };
      return { ok: false, status: 0, body: { message: "The server cannot be reached. Is it still running?" } };
    }
    try {
      body = await response.json();
    } catch (e) {
      if (signal.aborted) return { aborted: true };
      body = { message: response.status === 413   // refused by the server in front, before serkit read it
        ? `The upload is larger than this server takes (at most ${mib(settings.max_upload_bytes)} per upload).`
        : `The server answered ${response.status} ${response.statusText} without details.` };
    }
    return { ok: response.ok, status: response.status, body, ms: performance.now() - started };
  }

  // The server's byte limit is on the whole request: the file and the form around it (its name,
  // the model, the settings; about 600 bytes), which this margin covers.
  const formBytes = (filename) => 1024 + 3 * (filename.length + el.model.value.length);
  function sizeError(bytes, filename, what) {
    const limit = settings.max_upload_bytes;
    if (!limit || bytes + formBytes(filename) <= limit) return null;
    const [size, most] = twoSizes(bytes, limit);
    return `${what} is ${size}; this server takes at most ${most} per upload ` +
      "(the file and about 1 KiB of form data). Send a smaller or shorter file.";
  }

  async function analyse(blob, filename, again = false) {
    keepFocus = again;
    const returnTo = again ? document.activeElement : null;   // disabled while busy, it loses the focus
    clearError();
    const tooLarge = sizeError(blob.size, filename, "The file");
    if (tooLarge) {            // also before any conversion: a compressed file over the limit is refused as it is
      showError(tooLarge);
      return;
    }
    if (blob.size === 0) {
      showError("The file is empty.");
      return;
    }
    const j = begin(`Analysing ${filename}…`, filename, returnTo);
    try {
      let r = await post(blob, filename, j.controller.signal);
      if (!current(j)) return;                  // cancelled, or a newer clip took its place
      // A format the server cannot read (WebM, M4A…) but this browser can: convert it here.
      if (!r.ok && r.status === 415 && r.body.error === "unsupported_format") {
        setBusy(true, `Converting ${filename} to WAV in the browser…`);
        const name = filename.replace(/\.[^.]*$/, "") + ".wav";
        let wav;
        try {
          wav = await toWav(blob, name, "The file");
        } catch (e) {
          if (!current(j)) return;
          end(j);
          showError(e instanceof Refused ? e.message : "The server does not read this format, and this browser " +
            "could not convert the file to WAV either (it may be damaged, or in a format this browser does " +
            "not play). Convert it to WAV (for example: ffmpeg -i in.webm out.wav) and send that.");
          return;
        }
        if (!current(j)) return;
        setBusy(true, `Analysing ${name}…`);
        r = await post(wav, name, j.controller.signal);
        if (!current(j)) return;
      }
      end(j);
      if (returnTo && returnTo !== document.body && document.activeElement === document.body) returnTo.focus();
      if (r.ok) {
        if (!held || held.blob !== blob) showClip(blob, filename);
        held = { blob, name: filename };
        showResult(r.body, r.ms);
      } else {
        showError(r.body.message || `The server answered ${r.status}.`);
      }
    } finally {
      end(j);
    }
  }

  // A changed setting applies to the clip on show at once.
  function reanalyse() {
    describeModel();
    // Not while recording: the recording is the next clip, and the new setting applies to it.
    if (held && !busy && !recording && !opening) analyse(held.blob, held.name, true);
  }
  el.model.addEventListener("change", reanalyse);
  el.vad.addEventListener("change", reanalyse);
  // one voice or several: ticking one unticks the other
  el.sameSpeaker.addEventListener("change", () => { if (el.sameSpeaker.checked) el.severalVoices.checked = false; reanalyse(); });
  el.severalVoices.addEventListener("change", () => { if (el.severalVoices.checked) el.sameSpeaker.checked = false; reanalyse(); });

  // -- file input and drag and drop ------------------------------------------------------------
  el.file.addEventListener("change", () => {
    const f = el.file.files[0];
    if (f) analyse(f, f.name);
    el.file.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    el.drop.addEventListener(type, (e) => {
      e.preventDefault();
      if (!busy && !recording && !opening) el.drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "dragend"]) {
    el.drop.addEventListener(type, () => el.drop.classList.remove("over"));
  }
  el.drop.addEventListener("drop", (e) => {
    e.preventDefault();
    el.drop.classList.remove("over");
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f && !busy && !recording && !opening) analyse(f, f.name);    // as the disabled file picker
  });
  // A file dropped outside the zone must not replace the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());

  // -- audio in the browser: decode, mix to mono, resample, encode 16-bit WAV -------------------
  // Audio the server would refuse (too long, or too large once converted) is refused here, before
  // it is rendered or sent, with the reason in words: a Refused error's message.
  class Refused extends Error {}
  async function toWav(blob, filename, what) {
    const Offline = window.OfflineAudioContext || window.webkitOfflineAudioContext;
    if (!Offline) throw new Error("no Web Audio");
    const decoded = await new Offline(1, 1, TARGET_RATE).decodeAudioData(await blob.arrayBuffer());
    if (decoded.duration > settings.max_seconds) {
      const d = decoded.duration;
      throw new Refused(`${what} is ${d >= 60 ? clock(d, true, 0) + " (" + Math.round(d) + " s)" : d.toFixed(1) + " s"} ` +
        `long; this server takes at most ${settings.max_seconds} s of audio. Send a shorter clip.`);
    }
    const n = Math.ceil(decoded.duration * TARGET_RATE);
    const tooLarge = sizeError(44 + 2 * n, filename, `${what}, converted to WAV,`);
    if (tooLarge) throw new Refused(tooLarge);
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
  let recording = null;   // {recorder, stream, chunks, started, seconds, timer}
  let opening = null;     // {cancelled}: the microphone asked for, not given yet (the browser may be asking)
  if (!canRecord) {
    el.record.disabled = true;
    $("record-hint").textContent = window.isSecureContext
      ? "This browser cannot record audio."
      : "Recording needs a secure page: open it as https:// or on localhost.";
  }
  const release = (stream) => stream.getTracks().forEach((t) => t.stop());

  async function startRecording() {
    clearError();
    const ask = { cancelled: false };       // pressed again before the microphone came: given up
    opening = ask;
    showRecording("opening");
    el.status.textContent = "Waiting for the microphone: allow it if the browser asks, or press the button again to cancel.";
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false } });
    } catch (e) {
      if (ask.cancelled) return;
      opening = null;
      showRecording("off");
      showError(e && e.name === "NotAllowedError"
        ? "The browser was not allowed to use the microphone. To allow it, click the microphone or lock " +
          "icon in the address bar (or open this site's settings), allow the microphone, then press Record again."
        : "No microphone could be opened.");
      return;
    }
    if (ask.cancelled) {                     // a stream nobody wants any more: close it at once
      release(stream);
      return;
    }
    opening = null;
    let recorder;
    try {
      recorder = new MediaRecorder(stream);
    } catch (e) {
      release(stream);
      showRecording("off");
      showError("This browser cannot record from the microphone.");
      return;
    }
    const rec = { recorder, stream, chunks: [], started: performance.now(), seconds: 0, timer: 0 };
    recorder.addEventListener("dataavailable", (e) => { if (e.data.size) rec.chunks.push(e.data); });
    recorder.addEventListener("stop", () => finishRecording(rec));
    recorder.start();
    recording = rec;
    showRecording("on");
    el.status.textContent = "Recording…";
    rec.timer = setInterval(() => {
      const s = (performance.now() - rec.started) / 1000;
      el.recordTime.textContent = `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
      if (s >= settings.max_seconds - 0.5) stopRecording();
    }, 200);
  }

  function giveUp() {
    opening.cancelled = true;
    opening = null;
    showRecording("off");
    el.status.textContent = "Recording cancelled.";
  }

  // "off", "opening" (waiting for the microphone: pressing again gives up) or "on"
  function showRecording(state) {
    el.record.setAttribute("aria-pressed", String(state !== "off"));
    el.record.classList.toggle("recording", state === "on");
    el.record.classList.toggle("opening", state === "opening");
    el.recordText.textContent = { off: "Record a clip", opening: "Waiting… (press to cancel)",
      on: "Stop recording" }[state];
    if (state !== "on") el.recordTime.textContent = "";
    el.file.disabled = state !== "off" || busy;
    el.drop.classList.toggle("disabled", state !== "off" || busy);
  }

  function stopRecording() {
    if (!recording) return;
    clearInterval(recording.timer);
    recording.seconds = (performance.now() - recording.started) / 1000;
    if (recording.recorder.state !== "inactive") recording.recorder.stop();
  }

  async function finishRecording(rec) {
    release(rec.stream);
    clearInterval(rec.timer);
    recording = null;
    showRecording("off");
    const seconds = rec.seconds || (performance.now() - rec.started) / 1000;
    const tooShort = `The recording is empty or too short (${seconds.toFixed(2)} s): press Record, speak, then press Stop.`;
    if (!rec.chunks.length || seconds < settings.min_seconds) {
      showError(tooShort);
      return;
    }
    const raw = new Blob(rec.chunks, { type: rec.recorder.mimeType || "audio/webm" });
    const j = begin("Encoding the recording…", "the recording");
    let wav;
    try {
      wav = await toWav(raw, "recording.wav", "The recording");
    } catch (e) {
      if (!current(j)) return;
      end(j);
      showError(e instanceof Refused ? e.message : seconds < 1 ? tooShort
        : "The recording could not be converted to WAV in this browser.");
      return;
    }
    if (!current(j)) return;
    end(j);
    analyse(wav, "recording.wav");
  }

  el.record.addEventListener("click", () => (opening ? giveUp() : recording ? stopRecording() : startRecording()));
})();
