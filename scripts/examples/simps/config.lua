-- The Simps document's config/servers.php, transcribed as it is written:
-- the MQTT server under `mqtt`, Swoole's keys kept, each packet type's
-- handler named in receiveCallbacks. (Simps names a class and a method,
-- [\App\Events\MqttServer::class, 'onMqConnect']; here the handlers are
-- main.lua's functions, so a name is enough. { "module", "function" }
-- names a function of a module, as the class did.)
--
-- Flags win over this file: `broker --scripts scripts/examples/simps`
-- listens on 0.0.0.0:9503 with one worker, as the document's server does;
-- add --listen to choose another address.

return {
  mqtt = {
    ip = "0.0.0.0",
    port = 9503,
    callbacks = {},
    receiveCallbacks = {
      [mqtt.CONNECT] = "onMqConnect",
      [mqtt.PINGREQ] = "onMqPingreq",
      [mqtt.DISCONNECT] = "onMqDisconnect",
      [mqtt.PUBLISH] = "onMqPublish",
      [mqtt.SUBSCRIBE] = "onMqSubscribe",
      [mqtt.UNSUBSCRIBE] = "onMqUnsubscribe",
    },
    settings = {
      worker_num = 1,
      open_mqtt_protocol = true,
    },
  },
}
