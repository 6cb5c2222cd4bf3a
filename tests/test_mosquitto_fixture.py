import threading

import paho.mqtt.client as mqtt


def _client(broker, **kw):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5, **kw)
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def test_fixture_broker_carries_messages_and_restarts(mosquitto):
    got = threading.Event()
    payloads = []

    def on_message(client, userdata, msg):
        payloads.append(msg.payload)
        got.set()

    for attempt in range(2):
        got.clear()
        sub = _client(mosquitto)
        sub.on_message = on_message
        subscribed = threading.Event()
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.subscribe("t/x", qos=1)
        assert subscribed.wait(5)
        pub = _client(mosquitto)
        pub.publish("t/x", b"hello%d" % attempt, qos=1).wait_for_publish(5)
        assert got.wait(5)
        for c in (sub, pub):
            c.loop_stop()
            c.disconnect()
        if attempt == 0:
            mosquitto.restart()
    assert payloads == [b"hello0", b"hello1"]
