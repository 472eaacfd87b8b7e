// MQTT.js against the broker: run by TestMQTTjs (engine/broker) and, over
// ws:// and wss://, TestMQTTjsWebSocket (engine) as
//   node interop.js mqtt://127.0.0.1:PORT
// with the mqtt package on NODE_PATH. It exits 0 and prints "ok" when every
// check passed, else prints what failed and exits 1.
const mqtt = require("mqtt");
const url = process.argv[2];

function fail(msg) {
  console.error("FAIL: " + msg);
  process.exit(1);
}
setTimeout(() => fail("timed out"), 15000).unref();

function connect(opts) {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(url, Object.assign({ reconnectPeriod: 0, connectTimeout: 5000 }, opts));
    c.once("connect", (ack) => resolve([c, ack]));
    c.once("error", reject);
  });
}

async function run(version) {
  const tag = "v" + version;
  const [sub] = await connect({ protocolVersion: version, clientId: "js-sub-" + tag, clean: true });
  const got = [];
  sub.on("message", (topic, payload, packet) => got.push({ topic, payload: payload.toString(), packet }));
  await sub.subscribeAsync("js/" + tag + "/#", { qos: 2 });
  const [pub] = await connect({ protocolVersion: version, clientId: "js-pub-" + tag, clean: true });
  const props = version === 5 ? { properties: { contentType: "text/plain", userProperties: { k: "v" } } } : {};
  for (const qos of [0, 1, 2]) {
    await pub.publishAsync("js/" + tag + "/q" + qos, "m" + qos, Object.assign({ qos }, props));
  }
  await pub.publishAsync("js/" + tag + "/state", "retained", { qos: 1, retain: true });
  await new Promise((r) => setTimeout(r, 300));
  if (got.length !== 4) fail(tag + ": want 4 messages, got " + got.length);
  for (const qos of [0, 1, 2]) {
    const m = got.find((x) => x.topic === "js/" + tag + "/q" + qos);
    if (!m || m.payload !== "m" + qos || m.packet.qos !== qos) fail(tag + ": message at QoS " + qos + ": " + JSON.stringify(m && m.packet));
    if (version === 5 && (m.packet.properties.contentType !== "text/plain" || m.packet.properties.userProperties.k !== "v"))
      fail(tag + ": properties lost: " + JSON.stringify(m.packet.properties));
  }
  // A late subscriber gets the retained message with the retain flag.
  const [late] = await connect({ protocolVersion: version, clientId: "js-late-" + tag, clean: true });
  const retained = new Promise((resolve) => late.on("message", (t, p, packet) => resolve(packet)));
  await late.subscribeAsync("js/" + tag + "/state", { qos: 1 });
  const r = await retained;
  if (!r.retain || r.payload.toString() !== "retained") fail(tag + ": retained delivery " + JSON.stringify(r));
  // Clear it, and disconnect everyone cleanly.
  await pub.publishAsync("js/" + tag + "/state", "", { qos: 1, retain: true });
  await Promise.all([sub.endAsync(), pub.endAsync(), late.endAsync()]);
}

(async () => {
  await run(4);
  await run(5);
  console.log("ok");
  process.exit(0);
})().catch((e) => fail(e && e.stack ? e.stack : String(e)));
