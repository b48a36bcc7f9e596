// Drives stock livekit-client in Debian's Chromium (playwright-core, executablePath: no browser
// download) for the end-to-end tests. One JSON plan on argv[2]; one JSON report on stdout.
//
// plan = {
//   chromium: "/usr/bin/chromium", url: "ws://...", seconds: 20,
//   roomOptions: {singlePeerConnection: true},        // false: the /rtc (two peer connection) path
//   speakers: [{identity, token, wav, audioProcessing: false}],  // fake microphone from a WAV
//   listeners: [{identity, token}],                     // captions as a meeting client shows them
// }
//
// Each speaker gets its own browser process (Chromium's fake capture file is per process). Pages
// are served from 127.0.0.1 (a secure context, so getUserMedia works); media goes to the server's
// non-loopback address. Everything a test asserts on is recorded with Date.now() times.
import http from 'node:http';
import fs from 'node:fs';
import { chromium } from 'playwright-core';

const umd = fs.readFileSync(new URL('./node_modules/livekit-client/dist/livekit-client.umd.js', import.meta.url));
const plan = JSON.parse(process.argv[2]);

const page = `<!doctype html><meta charset="utf-8"><title>e2e</title>
<script src="/livekit-client.umd.js"></script>`;
const server = http.createServer((req, res) => {
  if (req.url === '/livekit-client.umd.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(umd);
  } else {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${server.address().port}/`;

// Runs in the page: join, record every event a test cares about.
async function joinInPage({ url, token, roomOptions, publish, audioProcessing }) {
  const LK = window.LivekitClient;
  const log = (window.__log = { events: [], captions: [], legacy: [], trackSid: null });
  const note = (kind, detail = {}) => log.events.push({ at: Date.now(), kind, ...detail });
  const room = (window.__room = new LK.Room({ ...roomOptions }));
  for (const name of ['Reconnecting', 'Reconnected', 'SignalReconnecting', 'Disconnected',
    'ConnectionStateChanged', 'MediaDevicesError']) {
    room.on(LK.RoomEvent[name], (arg) => note(name, { arg: arg === undefined ? null : String(arg) }));
  }
  room.registerTextStreamHandler('lk.transcription', async (reader, participantInfo) => {
    const attrs = reader.info.attributes || {};
    const text = await reader.readAll();
    log.captions.push({
      at: Date.now(),
      sender: participantInfo.identity,
      segmentId: attrs['lk.segment_id'] || '',
      trackId: attrs['lk.transcribed_track_id'] || '',
      final: attrs['lk.transcription_final'] === 'true',
      text,
    });
  });
  room.on(LK.RoomEvent.TranscriptionReceived, (segments, participant, publication) => {
    for (const s of segments) {
      log.legacy.push({ at: Date.now(), sender: participant ? participant.identity : '',
        trackId: publication ? publication.trackSid : '', id: s.id, final: s.final, text: s.text });
    }
  });
  try {
    await room.connect(url, token);
    note('connected', { path: room.engine && room.engine.client && room.engine.client.useV0SignalPath ? 'v0' : 'v1' });
  } catch (e) {
    note('connect_error', { name: e.name, message: String(e.message || e), reason: e.reason ?? null, status: e.status ?? null });
    return log;
  }
  if (publish) {
    const started = Date.now();
    try {
      const options = { autoGainControl: audioProcessing, noiseSuppression: audioProcessing,
        echoCancellation: audioProcessing };
      const pub = await room.localParticipant.setMicrophoneEnabled(true, options);
      log.trackSid = pub ? pub.trackSid : null;
      // The level of what is actually sent (after the browser's processing), every 100 ms.
      const track = pub && pub.track ? pub.track.mediaStreamTrack : null;
      if (track) {
        const ctx = new AudioContext();
        const analyser = ctx.createAnalyser();
        analyser.fftSize = 2048;
        ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
        const buf = new Float32Array(analyser.fftSize);
        log.levels = [];
        setInterval(() => {
          analyser.getFloatTimeDomainData(buf);
          let sum = 0;
          for (const v of buf) sum += v * v;
          log.levels.push([Date.now(), Math.sqrt(sum / buf.length)]);
        }, 100);
      }
      note('published', { ms: Date.now() - started, trackSid: log.trackSid,
        mime: pub && pub.mimeType ? pub.mimeType : '' });
    } catch (e) {
      note('publish_error', { name: e.name, message: String(e.message || e), ms: Date.now() - started });
    }
  }
  return null;
}

const launched = [];
async function open(extraArgs) {
  const browser = await chromium.launch({
    executablePath: plan.chromium,
    args: ['--no-sandbox', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      '--autoplay-policy=no-user-gesture-required', ...extraArgs],
  });
  launched.push(browser);
  const context = await browser.newContext();
  const p = await context.newPage();
  const consoleLines = [];
  p.on('console', (m) => consoleLines.push({ at: Date.now(), type: m.type(), text: m.text() }));
  p.on('pageerror', (e) => consoleLines.push({ at: Date.now(), type: 'pageerror', text: String(e) }));
  await p.goto(origin);
  await p.waitForFunction(() => !!window.LivekitClient);
  return { page: p, consoleLines };
}

const report = { speakers: [], listeners: [] };
try {
  const listeners = [];
  for (const l of plan.listeners || []) {
    const { page: p, consoleLines } = await open([]);
    const early = await p.evaluate(joinInPage, { url: plan.url, token: l.token,
      roomOptions: plan.roomOptions || {}, publish: false, audioProcessing: false });
    listeners.push({ identity: l.identity, page: p, consoleLines, early });
  }
  const speakers = [];
  for (const s of plan.speakers || []) {
    const { page: p, consoleLines } = await open([`--use-file-for-fake-audio-capture=${s.wav}%noloop`]);
    const early = await p.evaluate(joinInPage, { url: plan.url, token: s.token,
      roomOptions: plan.roomOptions || {}, publish: true, audioProcessing: !!s.audioProcessing });
    speakers.push({ identity: s.identity, page: p, consoleLines, early });
  }
  await new Promise((resolve) => setTimeout(resolve, (plan.seconds || 20) * 1000));
  for (const [out, list] of [[report.speakers, speakers], [report.listeners, listeners]]) {
    for (const entry of list) {
      const log = entry.early || (await entry.page.evaluate(() => window.__log));
      out.push({ identity: entry.identity, ...log, console: entry.consoleLines });
    }
  }
  for (const entry of [...speakers, ...listeners]) {
    await entry.page.evaluate(() => window.__room && window.__room.disconnect()).catch(() => {});
  }
} finally {
  for (const b of launched) await b.close().catch(() => {});
  server.close();
}
process.stdout.write(JSON.stringify(report));
