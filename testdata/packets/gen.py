#!/usr/bin/env python3
"""Writes the packet fixtures in this folder.

The fixtures are meant to be read and edited by hand; this script is how the
first set was written. It builds each packet's bytes field by field from the
specifications, independently of the Go encoder, so the Go tests compare two
implementations. Run it from this folder: python3 gen.py
"""
import json, os

HERE = os.path.dirname(os.path.abspath(__file__))

class B:
    """A packet body: a list of (bytes, comment) lines."""
    def __init__(self):
        self.lines = []
    def raw(self, bs, c):
        self.lines.append((bytes(bs), c)); return self
    def u8(self, v, c): return self.raw([v], c)
    def u16(self, v, c): return self.raw([v >> 8, v & 0xff], c)
    def u32(self, v, c): return self.raw(v.to_bytes(4, 'big'), c)
    def s(self, v, c):
        b = v.encode('utf-8') if isinstance(v, str) else v
        return self.raw(len(b).to_bytes(2, 'big') + b, '%s %s' % (c, json.dumps(v if isinstance(v, str) else v.decode('latin-1'))))
    def props(self, plist, c='properties'):
        body = B()
        for p in plist:
            body.lines.extend(p.lines)
        n = sum(len(b) for b, _ in body.lines)
        self.raw(varint(n), '%s length %d' % (c, n))
        self.lines.extend(body.lines)
        return self
    def size(self): return sum(len(b) for b, _ in self.lines)

def varint(n):
    out = []
    while True:
        d = n % 128; n //= 128
        if n: d |= 0x80
        out.append(d)
        if not n: return bytes(out)

def prop(pid, kind, v, name):
    b = B()
    if kind == 'byte': b.raw([pid, v], '%s = %d' % (name, v))
    elif kind == 'u16': b.raw([pid, v >> 8, v & 0xff], '%s = %d' % (name, v))
    elif kind == 'u32': b.raw(bytes([pid]) + v.to_bytes(4, 'big'), '%s = %d' % (name, v))
    elif kind == 'varint': b.raw(bytes([pid]) + varint(v), '%s = %d' % (name, v))
    elif kind == 'str':
        e = v.encode(); b.raw(bytes([pid]) + len(e).to_bytes(2, 'big') + e, '%s = %s' % (name, json.dumps(v)))
    elif kind == 'pair':
        k, val = v; k2, v2 = k.encode(), val.encode()
        b.raw(bytes([pid]) + len(k2).to_bytes(2, 'big') + k2 + len(v2).to_bytes(2, 'big') + v2, '%s = %s' % (name, json.dumps([k, val])))
    return b

P = {  # name: (id, kind)
 'payload_format_indicator': (0x01, 'byte'), 'message_expiry_interval': (0x02, 'u32'),
 'content_type': (0x03, 'str'), 'response_topic': (0x08, 'str'), 'correlation_data': (0x09, 'str'),
 'subscription_identifier': (0x0B, 'varint'), 'session_expiry_interval': (0x11, 'u32'),
 'assigned_client_identifier': (0x12, 'str'), 'server_keep_alive': (0x13, 'u16'),
 'authentication_method': (0x15, 'str'), 'authentication_data': (0x16, 'str'),
 'request_problem_information': (0x17, 'byte'), 'will_delay_interval': (0x18, 'u32'),
 'request_response_information': (0x19, 'byte'), 'response_information': (0x1A, 'str'),
 'server_reference': (0x1C, 'str'), 'reason_string': (0x1F, 'str'), 'receive_maximum': (0x21, 'u16'),
 'topic_alias_maximum': (0x22, 'u16'), 'topic_alias': (0x23, 'u16'), 'maximum_qos': (0x24, 'byte'),
 'retain_available': (0x25, 'byte'), 'user_property': (0x26, 'pair'), 'maximum_packet_size': (0x27, 'u32'),
 'wildcard_subscription_available': (0x28, 'byte'), 'subscription_identifier_available': (0x29, 'byte'),
 'shared_subscription_available': (0x2A, 'byte'),
}

def props_of(items):
    """items: list of (name, value); returns (list of B, dict for JSON)."""
    bs, d = [], {}
    for name, v in items:
        pid, kind = P[name]
        bs.append(prop(pid, kind, v, name))
        if name == 'user_property':
            d.setdefault(name, []).append(list(v))
        elif name == 'subscription_identifier' and d.get('_sub_list'):
            d[name].append(v)
        else:
            d[name] = v
    d.pop('_sub_list', None)
    return bs, d

TYPES = ['', 'CONNECT', 'CONNACK', 'PUBLISH', 'PUBACK', 'PUBREC', 'PUBREL', 'PUBCOMP', 'SUBSCRIBE',
         'SUBACK', 'UNSUBSCRIBE', 'UNSUBACK', 'PINGREQ', 'PINGRESP', 'DISCONNECT', 'AUTH']

def frame(first, body, rl=None):
    n = body.size() if rl is None else rl
    t = first >> 4
    lines = [(bytes([first]) + varint(n) if rl is None or isinstance(rl, int) else bytes([first]) + rl,
              '%s, flags 0x%X, remaining length %d' % (TYPES[t] or 'reserved type 0', first & 0xf, n if isinstance(n, int) else -1))]
    return lines + body.lines

def write(name, desc, level, lines, data=None, error=None, canonical=None, extra=None):
    out = [desc, 'level: %d' % level]
    for k, v in (extra or {}).items():
        out.append('%s: %s' % (k, v))
    out.append('-- hex --')
    width = max(len(b) for b, _ in lines if len(b) <= 24) * 3 if lines else 0
    for b, c in lines:
        hx = ' '.join('%02x' % x for x in b)
        out.append(('%-*s # %s' % (min(width, 60), hx, c)) if c else hx)
    if canonical is not None:
        out.append('-- canonical --')
        for b, c in canonical:
            hx = ' '.join('%02x' % x for x in b)
            out.append(('%-*s # %s' % (min(width, 60), hx, c)) if c else hx)
    if data is not None:
        out.append('-- packet.json --')
        out.append(json.dumps(data, indent=2, ensure_ascii=False))
    if error is not None:
        out.append('-- error --')
        out.append('code: 0x%02X' % error[0])
        out.append('field: %s' % error[1])
    with open(os.path.join(HERE, name + '.txtar'), 'w') as f:
        f.write('\n'.join(out) + '\n')

NAME = {3: 'MQIsdp', 4: 'MQTT', 5: 'MQTT'}

def connect(level, client_id, clean=True, keep_alive=60, will=None, user=None, password=None,
            props=None, will_props=None, flags_override=None, name=None):
    b = B()
    b.s(name or NAME[level], 'protocol name')
    b.u8(level, 'protocol level %d' % level)
    flags = 0
    if clean: flags |= 0x02
    if will:
        flags |= 0x04 | (will['qos'] << 3) | (0x20 if will['retain'] else 0)
    if password is not None: flags |= 0x40
    if user is not None: flags |= 0x80
    if flags_override is not None: flags = flags_override
    b.u8(flags, 'connect flags')
    b.u16(keep_alive, 'keep alive %d' % keep_alive)
    d = {'type': 1, 'protocol_name': name or NAME[level], 'protocol_level': level, 'clean_session': clean,
         'keep_alive': keep_alive, 'client_id': client_id}
    if level == 5:
        pb, pd = props_of(props or [])
        b.props(pb)
        if pd: d['properties'] = pd
    b.s(client_id, 'client id')
    if will:
        wd = {'qos': will['qos'], 'retain': will['retain'], 'topic': will['topic'], 'message': will['message']}
        if level == 5:
            pb, pd = props_of(will_props or [])
            b.props(pb, 'will properties')
            if pd: wd['properties'] = pd
        b.s(will['topic'], 'will topic')
        b.s(will['message'], 'will message')
        d['will'] = wd
    if user is not None:
        b.s(user, 'user name'); d['user_name'] = user
    if password is not None:
        b.s(password, 'password'); d['password'] = password
    return frame(0x10, b), d

def publish(level, topic, msg, qos=0, retain=False, dup=False, pid=None, props=None):
    b = B()
    b.s(topic, 'topic')
    d = {'type': 3, 'dup': dup, 'qos': qos, 'retain': retain, 'topic': topic, 'message': msg}
    if qos:
        b.u16(pid, 'message id %d' % pid); d['message_id'] = pid
    if level == 5:
        pb, pd = props_of(props or [])
        if props and sum(1 for n, _ in props if n == 'subscription_identifier'):
            pd['subscription_identifier'] = [v for n, v in props if n == 'subscription_identifier']
        b.props(pb)
        if pd: d['properties'] = pd
    if msg:
        b.raw(msg.encode(), 'payload %s' % json.dumps(msg))
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    return frame(first, b), d

def ack(level, t, pid, code=None, props=None):
    b = B(); b.u16(pid, 'message id %d' % pid)
    d = {'type': t, 'message_id': pid}
    if level == 5:
        d['code'] = code or 0
        if code is not None or props:
            b.u8(code or 0, 'reason code 0x%02X' % (code or 0))
        if props:
            pb, pd = props_of(props); b.props(pb); d['properties'] = pd
    return frame((t << 4) | (2 if t == 6 else 0), b), d

def subscribe(level, pid, filters, props=None):
    b = B(); b.u16(pid, 'message id %d' % pid)
    d = {'type': 8, 'message_id': pid}
    if level == 5:
        pb, pd = props_of(props or []); b.props(pb)
        if pd: d['properties'] = pd
    topics, flist = {}, []
    for f in filters:
        topic, qos = f[0], f[1]
        nl, rap, rh = (f[2:] + (False, False, 0))[:3] if len(f) > 2 else (False, False, 0)
        opts = qos | (4 if nl else 0) | (8 if rap else 0) | (rh << 4)
        b.s(topic, 'topic filter'); b.u8(opts, 'options 0x%02X' % opts)
        e = {'topic': topic, 'qos': qos}
        if level == 5:
            o = {'qos': qos, 'no_local': nl, 'retain_as_published': rap, 'retain_handling': rh}
            topics[topic] = o
            e.update({'no_local': nl, 'retain_as_published': rap, 'retain_handling': rh})
        else:
            topics[topic] = qos
        flist.append(e)
    d['topics'] = topics; d['filters'] = flist
    return frame(0x82, b), d

def suback(level, t, pid, codes, props=None):
    b = B(); b.u16(pid, 'message id %d' % pid)
    d = {'type': t, 'message_id': pid}
    if level == 5:
        pb, pd = props_of(props or []); b.props(pb)
        if pd: d['properties'] = pd
    if t == 9 or level == 5:
        for c in codes: b.u8(c, 'code 0x%02X' % c)
        d['codes'] = codes
    return frame(t << 4, b), d

def unsubscribe(level, pid, topics, props=None):
    b = B(); b.u16(pid, 'message id %d' % pid)
    d = {'type': 10, 'message_id': pid}
    if level == 5:
        pb, pd = props_of(props or []); b.props(pb)
        if pd: d['properties'] = pd
    for t in topics: b.s(t, 'topic filter')
    d['topics'] = topics
    return frame(0xA2, b), d

def disc(level, t, code=None, props=None):
    b = B(); d = {'type': t}
    if level == 5:
        d['code'] = code or 0
        if code is not None or props: b.u8(code or 0, 'reason code 0x%02X' % (code or 0))
        if props:
            pb, pd = props_of(props); b.props(pb); d['properties'] = pd
    return frame(t << 4, b), d

def simple(t):
    return frame(t << 4, B()), {'type': t}

def pos(name, desc, level, pair, canonical=None, extra=None):
    write(name, desc, level, pair[0], data=pair[1], canonical=canonical, extra=extra)

def neg(name, desc, level, lines, code, field, extra=None):
    write(name, desc, level, lines, error=(code, field), extra=extra)

def raw(first, body_lines, rl=None):
    b = B()
    for bs, c in body_lines: b.raw(bs, c)
    return frame(first, b, rl)

def main():
    for f in os.listdir(HERE):
        if f.endswith('.txtar'): os.remove(os.path.join(HERE, f))
    # Every packet type on every level.
    for lv in (3, 4, 5):
        v = 'v%d' % lv
        pos(v + '-connect-minimal', 'CONNECT with only a client id.', lv, connect(lv, 'c1'))
        pos(v + '-connect-full', 'CONNECT with will, user name and password.', lv,
            connect(lv, 'sensor-17', clean=False, keep_alive=30,
                    will={'qos': 1, 'retain': True, 'topic': 'sensors/17/status', 'message': 'offline'},
                    user='alice', password='s3cret'))
        pos(v + '-connack', 'CONNACK accepting the connection' + (' with a session present.' if lv > 3 else '.'),
            lv, (frame(0x20, B().u8(1 if lv > 3 else 0, 'acknowledge flags').u8(0, 'code 0') if lv < 5 else
                       B().u8(1, 'acknowledge flags: session present').u8(0, 'code 0').props([])),
                 {'type': 2, 'session_present': lv > 3, 'code': 0}))
        refuse = {3: 0x05, 4: 0x04, 5: 0x86}[lv]
        cb = B().u8(0, 'acknowledge flags').u8(refuse, 'code 0x%02X' % refuse)
        if lv == 5: cb.props([])
        pos(v + '-connack-refused', 'CONNACK refusing the connection.', lv, (frame(0x20, cb), {'type': 2, 'session_present': False, 'code': refuse}))
        pos(v + '-publish-qos0', 'PUBLISH at QoS 0.', lv, publish(lv, 'a/b', 'hello'))
        pos(v + '-publish-qos1', 'PUBLISH at QoS 1 with a 64-byte payload.', lv, publish(lv, 'sensors/temp', 'x' * 64, qos=1, pid=10))
        pos(v + '-publish-qos2-retain-dup', 'A retransmitted retained PUBLISH at QoS 2.', lv,
            publish(lv, 'home/lights', 'on', qos=2, retain=True, dup=True, pid=65535))
        pos(v + '-publish-empty-payload', 'A retained PUBLISH with an empty payload (clears the retained message).', lv,
            publish(lv, 'home/lights', '', qos=0, retain=True))
        for t, nm in ((4, 'puback'), (5, 'pubrec'), (6, 'pubrel'), (7, 'pubcomp')):
            pos('%s-%s' % (v, nm), '%s for message id 10.' % nm.upper(), lv, ack(lv, t, 10))
        pos(v + '-subscribe', 'SUBSCRIBE with four filters.', lv,
            subscribe(lv, 7, [('a/b', 0), ('sensors/+/temp', 1), ('home/#', 2), ('#', 1)]))
        pos(v + '-suback', 'SUBACK granting and refusing.', lv, suback(lv, 9, 7, [0, 1, 2, 0x80]))
        pos(v + '-unsubscribe', 'UNSUBSCRIBE from two filters.', lv, unsubscribe(lv, 8, ['a/b', 'home/#']))
        pos(v + '-unsuback', 'UNSUBACK.', lv, suback(lv, 11, 8, [0, 0x11]))
        pos(v + '-pingreq', 'PINGREQ.', lv, simple(12))
        pos(v + '-pingresp', 'PINGRESP.', lv, simple(13))
        pos(v + '-disconnect', 'DISCONNECT.', lv, disc(lv, 14))
    pos('v4-connect-unicode', 'CONNECT whose client id and user name are non-ASCII, including a BOM that must be kept [MQTT-1.5.3-3].', 4,
        connect(4, '\ufeffcapteur-été', user='ユーザー', password='pw'))
    pos('v4-connect-empty-client-id', 'CONNECT with a zero-length client id and clean session [MQTT-3.1.3-6].', 4, connect(4, ''))
    # MQTT 5.0 properties: every one of the 27 appears below.
    pos('v5-connect-properties', 'CONNECT with every CONNECT property and every will property.', 5,
        connect(5, 'dev-1', clean=True, keep_alive=120,
                will={'qos': 2, 'retain': False, 'topic': 'devices/dev-1/will', 'message': '{"online":false}'},
                user='bob', password='pw',
                props=[('session_expiry_interval', 3600), ('authentication_method', 'SCRAM-SHA-1'),
                       ('authentication_data', 'client-first'), ('request_problem_information', 0),
                       ('request_response_information', 1), ('receive_maximum', 20),
                       ('topic_alias_maximum', 10), ('user_property', ('region', 'eu')),
                       ('user_property', ('region', 'us')), ('maximum_packet_size', 1048576)],
                will_props=[('payload_format_indicator', 1), ('message_expiry_interval', 600),
                            ('content_type', 'application/json'), ('response_topic', 'devices/dev-1/reply'),
                            ('correlation_data', 'abc123'), ('will_delay_interval', 30),
                            ('user_property', ('k', 'v'))]))
    pos('v5-connect-password-only', 'A 5.0 CONNECT may carry a password without a user name (5.0 §3.1.2.9).', 5,
        connect(5, 'c2', password='token'))
    cp, cd = props_of([('session_expiry_interval', 7200), ('assigned_client_identifier', 'auto-7f3a'),
                       ('server_keep_alive', 45), ('authentication_method', 'SCRAM-SHA-1'),
                       ('authentication_data', 'server-final'), ('response_information', 'resp/'),
                       ('server_reference', 'other.example:1883'), ('reason_string', 'welcome'),
                       ('receive_maximum', 100), ('topic_alias_maximum', 16), ('maximum_qos', 1),
                       ('retain_available', 1), ('user_property', ('a', '1')), ('maximum_packet_size', 65536),
                       ('wildcard_subscription_available', 1), ('subscription_identifier_available', 1),
                       ('shared_subscription_available', 0)])
    pos('v5-connack-properties', 'CONNACK with every CONNACK property.', 5,
        (frame(0x20, B().u8(0, 'acknowledge flags').u8(0, 'code 0').props(cp)),
         {'type': 2, 'session_present': False, 'code': 0, 'properties': cd}))
    pos('v5-publish-properties', 'PUBLISH with every PUBLISH property; user properties keep order and duplicates.', 5,
        publish(5, 'req/weather', '{"city":"Oslo"}', qos=1, pid=3,
                props=[('payload_format_indicator', 1), ('message_expiry_interval', 60),
                       ('content_type', 'application/json'), ('response_topic', 'resp/weather/42'),
                       ('correlation_data', 'req-42'), ('subscription_identifier', 5),
                       ('subscription_identifier', 300), ('topic_alias', 4),
                       ('user_property', ('trace', 'a')), ('user_property', ('trace', 'b')),
                       ('user_property', ('trace', 'a'))]))
    pos('v5-publish-topic-alias-only', 'PUBLISH with an empty topic name that uses an established topic alias.', 5,
        publish(5, '', 'v', props=[('topic_alias', 4)]))
    pos('v5-puback-code', 'PUBACK with a reason code and no properties.', 5, ack(5, 4, 11, code=0x10))
    pos('v5-pubrec-failure', 'PUBREC refusing with a reason string and a user property.', 5,
        ack(5, 5, 12, code=0x87, props=[('reason_string', 'not allowed'), ('user_property', ('why', 'acl'))]))
    pos('v5-pubrel-not-found', 'PUBREL reporting an unknown packet id.', 5, ack(5, 6, 13, code=0x92))
    pos('v5-pubcomp-reason', 'PUBCOMP with a reason string.', 5, ack(5, 7, 14, code=0, props=[('reason_string', 'done')]))
    pos('v5-subscribe-options', 'SUBSCRIBE with every subscription option, a subscription identifier and a shared subscription.', 5,
        subscribe(5, 9, [('a/+', 1, True, True, 2), ('$share/workers/jobs/#', 2, False, False, 1), ('x', 0, False, True, 0)],
                  props=[('subscription_identifier', 268435455), ('user_property', ('k', 'v'))]))
    pos('v5-suback-reasons', 'SUBACK with 5.0 failure codes and a reason string.', 5,
        suback(5, 9, 9, [1, 2, 0x87, 0x8F, 0x9E, 0xA1, 0xA2], props=[('reason_string', 'partly')]))
    pos('v5-unsubscribe-properties', 'UNSUBSCRIBE with a user property.', 5,
        unsubscribe(5, 10, ['$share/workers/jobs/#'], props=[('user_property', ('k', 'v'))]))
    pos('v5-unsuback-reasons', 'UNSUBACK with reason codes and a reason string.', 5,
        suback(5, 11, 10, [0, 0x11, 0x87], props=[('reason_string', 'r')]))
    pos('v5-disconnect-properties', 'DISCONNECT with a reason code and every DISCONNECT property.', 5,
        disc(5, 14, code=0x9C, props=[('session_expiry_interval', 0), ('server_reference', 'b.example'),
                                      ('reason_string', 'moving'), ('user_property', ('k', 'v'))]))
    pos('v5-disconnect-with-will', 'DISCONNECT 0x04: disconnect with will message.', 5, disc(5, 14, code=0x04))
    pos('v5-disconnect-shutdown', 'DISCONNECT 0x8B from a server that shuts down.', 5, disc(5, 14, code=0x8B))
    pos('v5-auth', 'AUTH continuing enhanced authentication.', 5,
        disc(5, 15, code=0x18, props=[('authentication_method', 'SCRAM-SHA-1'), ('authentication_data', 'client-final'),
                                      ('reason_string', 'step 2'), ('user_property', ('k', 'v'))]))
    pos('v5-auth-empty', 'AUTH with no body means Success (5.0 §3.15.2.1).', 5, disc(5, 15))
    # Canonical forms: accepted, but re-encoded shorter or in table order.
    l, d = ack(5, 4, 15, code=0, props=[])
    pos('v5-puback-explicit-success', 'PUBACK with an explicit Success and an empty property list; encoders leave both out.', 5,
        (l, d), canonical=ack(5, 4, 15)[0])
    l, d = disc(5, 14, code=0)
    pos('v5-disconnect-explicit-normal', 'DISCONNECT with an explicit Normal disconnection; encoders leave it out.', 5,
        (l, d), canonical=disc(5, 14)[0])
    b = B().s('t', 'topic').props(props_of([('user_property', ('k', 'v')), ('content_type', 'text/plain')])[0])
    b.raw(b'x', 'payload "x"')
    cb = B().s('t', 'topic').props(props_of([('content_type', 'text/plain'), ('user_property', ('k', 'v'))])[0])
    cb.raw(b'x', 'payload "x"')
    pos('v5-publish-property-order', 'Properties may come in any order; encoders write them in identifier order.', 5,
        (frame(0x30, b), {'type': 3, 'dup': False, 'qos': 0, 'retain': False, 'topic': 't', 'message': 'x',
                          'properties': {'content_type': 'text/plain', 'user_property': [['k', 'v']]}}),
        canonical=frame(0x30, cb))

    # Malformed and forbidden packets.
    A = 0x81; PE = 0x82
    neg('bad-type-0', 'Packet type 0 is reserved.', 4, raw(0x00, []), A, 'type')
    neg('bad-auth-before-v5', 'AUTH (type 15) is reserved before MQTT 5.0.', 4, raw(0xF0, []), A, 'type')
    neg('bad-connect-header-flags', 'CONNECT with fixed-header flags 0x1 [MQTT-2.2.2-2].', 4, connect(4, 'c')[0][:0] + raw(0x11, connect(4, 'c')[0][1:]), A, 'fixed_header.flags')
    neg('bad-pubrel-flags', 'PUBREL must have flags 0x2 [MQTT-3.6.1-1].', 4, raw(0x60, [(b'\x00\x01', 'message id 1')]), A, 'fixed_header.flags')
    neg('bad-subscribe-flags', 'SUBSCRIBE must have flags 0x2 [MQTT-3.8.1-1].', 4,
        raw(0x80, [(b'\x00\x01', 'message id 1'), (b'\x00\x01a', 'topic filter "a"'), (b'\x00', 'qos 0')]), A, 'fixed_header.flags')
    neg('bad-unsubscribe-flags', 'UNSUBSCRIBE must have flags 0x2 [MQTT-3.10.1-1].', 4,
        raw(0xA0, [(b'\x00\x01', 'message id 1'), (b'\x00\x01a', 'topic filter "a"')]), A, 'fixed_header.flags')
    neg('bad-pingreq-flags', 'PINGREQ with flags 0x1.', 4, raw(0xC1, []), A, 'fixed_header.flags')
    neg('bad-disconnect-flags', 'DISCONNECT with flags 0x2 [MQTT-3.14.1-1].', 5, raw(0xE2, []), A, 'fixed_header.flags')
    neg('bad-remaining-length-5-bytes', 'A remaining length of five bytes.', 4,
        [(b'\x30\xff\xff\xff\xff\x7f', 'PUBLISH, remaining length with 5 bytes')], A, 'remaining_length')
    neg('bad-remaining-length-not-minimal', 'A remaining length of 0 encoded in two bytes (5.0 [MQTT-1.5.5-1]).', 4,
        [(b'\xc0\x80\x00', 'PINGREQ, remaining length 0 in two bytes')], A, 'remaining_length')
    neg('bad-pingreq-trailing', 'PINGREQ with a body byte.', 4, raw(0xC0, [(b'\x00', 'extra byte')]), A, 'remaining_length')
    neg('bad-puback-trailing-v4', 'A 3.1.1 PUBACK has a remaining length of exactly 2.', 4,
        raw(0x40, [(b'\x00\x01', 'message id 1'), (b'\x00', 'extra byte')]), A, 'remaining_length')
    neg('bad-disconnect-body-v4', 'A 3.1.1 DISCONNECT has no body.', 4, raw(0xE0, [(b'\x00', 'extra byte')]), A, 'remaining_length')
    neg('bad-publish-qos3', 'PUBLISH with both QoS bits set [MQTT-3.3.1-4].', 4,
        raw(0x36, [(b'\x00\x01a', 'topic "a"'), (b'\x00\x01', 'message id 1')]), A, 'qos')
    neg('bad-publish-dup-qos0', 'DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2].', 4, raw(0x38, [(b'\x00\x01a', 'topic "a"')]), A, 'dup')
    neg('bad-publish-wildcard-plus', 'PUBLISH topic with "+" [MQTT-3.3.2-2].', 4, publish(4, 'a/+/c', 'x')[0], 0x90, 'topic')
    neg('bad-publish-wildcard-hash', 'PUBLISH topic with "#" [MQTT-3.3.2-2].', 5, publish(5, 'a/#', 'x')[0], 0x90, 'topic')
    neg('bad-publish-empty-topic-v4', 'A 3.1.1 PUBLISH with an empty topic [MQTT-4.7.3-1].', 4, publish(4, '', 'x')[0], 0x90, 'topic')
    neg('bad-publish-empty-topic-no-alias', 'A 5.0 PUBLISH with an empty topic and no topic alias.', 5, publish(5, '', 'x')[0], PE, 'topic')
    neg('bad-publish-packet-id-0', 'A QoS 1 PUBLISH with packet id 0 [MQTT-2.3.1-1].', 4, publish(4, 'a', 'x', qos=1, pid=0)[0], PE, 'message_id')
    neg('bad-publish-topic-invalid-utf8', 'PUBLISH topic with the byte 0xFF [MQTT-1.5.3-1].', 4,
        raw(0x30, [(b'\x00\x02a\xff', 'topic "a\\xff"')]), A, 'topic')
    neg('bad-publish-topic-nul', 'PUBLISH topic containing U+0000 [MQTT-1.5.3-2].', 4,
        raw(0x30, [(b'\x00\x03a\x00b', 'topic "a\\u0000b"')]), A, 'topic')
    neg('bad-publish-topic-surrogate', 'PUBLISH topic containing the encoded surrogate U+D800 [MQTT-1.5.3-1].', 4,
        raw(0x30, [(b'\x00\x04a\xed\xa0\x80', 'topic "a" + ED A0 80')]), A, 'topic')
    neg('bad-publish-topic-overrun', 'PUBLISH topic length runs past the packet.', 4,
        raw(0x30, [(b'\x00\x09abc', 'topic length 9, 3 bytes follow')]), A, 'topic')
    neg('bad-publish-topic-alias-0', 'Topic alias 0 (5.0 [MQTT-3.3.2-8]).', 5, publish(5, 't', 'x', props=[('topic_alias', 0)])[0], 0x94, 'properties.topic_alias')
    neg('bad-publish-unknown-property', 'PUBLISH with unknown property 0x7F.', 5,
        raw(0x30, [(b'\x00\x01t', 'topic "t"'), (b'\x02', 'properties length 2'), (b'\x7f\x00', 'property 0x7F')]), A, 'properties')
    neg('bad-publish-property-overrun', 'PUBLISH property length runs past the packet.', 5,
        raw(0x30, [(b'\x00\x01t', 'topic "t"'), (b'\x09', 'properties length 9'), (b'\x01\x01', 'payload_format_indicator = 1')]), A, 'properties.length')
    neg('bad-publish-payload-format-2', 'Payload format indicator 2.', 5, publish(5, 't', 'x', props=[('payload_format_indicator', 2)])[0], PE, 'properties.payload_format_indicator')
    neg('bad-publish-duplicate-property', 'PUBLISH with content type twice.', 5,
        publish(5, 't', 'x', props=[('content_type', 'a'), ('content_type', 'b')])[0], PE, 'properties.content_type')
    neg('bad-publish-disallowed-property', 'PUBLISH with session expiry interval, a CONNECT property.', 5,
        publish(5, 't', 'x', props=[('session_expiry_interval', 1)])[0], PE, 'properties.session_expiry_interval')
    neg('bad-publish-user-property-utf8', 'User property key with an invalid byte.', 5,
        raw(0x30, [(b'\x00\x01t', 'topic "t"'), (b'\x07', 'properties length 7'), (b'\x26\x00\x01\xc0\x00\x01v', 'user_property key C0 value "v"')]), A, 'properties.user_property.key')
    neg('bad-publish-subscription-id-0', 'Subscription identifier 0.', 5,
        publish(5, 't', 'x', props=[('subscription_identifier', 0)])[0], PE, 'properties.subscription_identifier')
    neg('bad-connect-reserved-flag', 'CONNECT with the reserved flag set [MQTT-3.1.2-3].', 4, connect(4, 'c', flags_override=0x03)[0], A, 'connect_flags')
    neg('bad-connect-will-qos-no-will', 'Will QoS without the will flag [MQTT-3.1.2-13].', 4, connect(4, 'c', flags_override=0x0A)[0], A, 'connect_flags.will_qos')
    neg('bad-connect-will-retain-no-will', 'Will retain without the will flag [MQTT-3.1.2-15].', 4, connect(4, 'c', flags_override=0x22)[0], A, 'connect_flags.will_retain')
    neg('bad-connect-will-qos3', 'Will QoS 3 [MQTT-3.1.2-14].', 4,
        connect(4, 'c', will={'qos': 3, 'retain': False, 'topic': 't', 'message': 'm'})[0], A, 'connect_flags.will_qos')
    neg('bad-connect-password-no-user', 'A 3.1.1 CONNECT with a password and no user name [MQTT-3.1.2-22].', 4,
        connect(4, 'c', password='p')[0], A, 'connect_flags.password')
    neg('bad-connect-protocol-name', 'CONNECT with protocol name "HTTP" [MQTT-3.1.2-1].', 4, connect(4, 'c', name='HTTP')[0], 0x84, 'protocol_name')
    neg('bad-connect-protocol-level', 'CONNECT with protocol level 6 [MQTT-3.1.2-2].', 4, connect(4, 'c')[0][:1] +
        [(b'\x00\x04MQTT', 'protocol name "MQTT"'), (b'\x06', 'protocol level 6'), (b'\x02', 'connect flags'), (b'\x00\x3c', 'keep alive'), (b'\x00\x01c', 'client id "c"')], 0x84, 'protocol_level')
    neg('bad-connect-mqisdp-level-4', 'Protocol name MQIsdp goes with level 3 only.', 4,
        raw(0x10, [(b'\x00\x06MQIsdp', 'protocol name "MQIsdp"'), (b'\x04', 'protocol level 4'), (b'\x02', 'connect flags'), (b'\x00\x3c', 'keep alive'), (b'\x00\x01c', 'client id "c"')]), 0x84, 'protocol_level')
    neg('bad-connect-client-id-utf8', 'Client id with an invalid byte [MQTT-3.1.3-4].', 4,
        raw(0x10, [(b'\x00\x04MQTT', 'protocol name "MQTT"'), (b'\x04', 'protocol level 4'), (b'\x02', 'connect flags'), (b'\x00\x3c', 'keep alive'), (b'\x00\x02c\xfe', 'client id "c\\xfe"')]), A, 'client_id')
    neg('bad-connect-truncated', 'CONNECT that ends before the keep alive.', 4,
        raw(0x10, [(b'\x00\x04MQTT', 'protocol name "MQTT"'), (b'\x04', 'protocol level 4'), (b'\x02', 'connect flags')]), A, 'keep_alive')
    neg('bad-connect-will-topic-wildcard', 'Will topic with a wildcard.', 4,
        connect(4, 'c', will={'qos': 0, 'retain': False, 'topic': 'a/#', 'message': 'm'})[0], 0x90, 'will.topic')
    neg('bad-connect-duplicate-property', 'CONNECT with session expiry interval twice.', 5,
        connect(5, 'c', props=[('session_expiry_interval', 1), ('session_expiry_interval', 2)])[0], PE, 'properties.session_expiry_interval')
    neg('bad-connect-disallowed-property', 'CONNECT with a topic alias.', 5, connect(5, 'c', props=[('topic_alias', 1)])[0], PE, 'properties.topic_alias')
    neg('bad-connect-receive-maximum-0', 'Receive maximum 0 is a protocol error.', 5, connect(5, 'c', props=[('receive_maximum', 0)])[0], PE, 'properties.receive_maximum')
    neg('bad-connect-max-packet-size-0', 'Maximum packet size 0 is a protocol error.', 5, connect(5, 'c', props=[('maximum_packet_size', 0)])[0], PE, 'properties.maximum_packet_size')
    neg('bad-connect-auth-data-no-method', 'Authentication data without a method.', 5, connect(5, 'c', props=[('authentication_data', 'x')])[0], PE, 'properties.authentication_data')
    neg('bad-connect-request-problem-2', 'Request problem information 2.', 5, connect(5, 'c', props=[('request_problem_information', 2)])[0], PE, 'properties.request_problem_information')
    neg('bad-connect-will-property', 'Will properties with a session expiry interval.', 5,
        connect(5, 'c', will={'qos': 0, 'retain': False, 'topic': 't', 'message': 'm'}, will_props=[('session_expiry_interval', 5)])[0], PE, 'will.properties.session_expiry_interval')
    neg('bad-connack-reserved-flags', 'CONNACK with reserved acknowledge flags.', 4, raw(0x20, [(b'\x02', 'acknowledge flags 0x02'), (b'\x00', 'code 0')]), A, 'session_present')
    neg('bad-connack-session-present-refused', 'CONNACK with session present and a refusal [MQTT-3.2.2-4].', 4, raw(0x20, [(b'\x01', 'session present'), (b'\x05', 'code 5')]), PE, 'session_present')
    neg('bad-subscribe-no-topics', 'SUBSCRIBE without topic filters [MQTT-3.8.3-3].', 4, raw(0x82, [(b'\x00\x01', 'message id 1')]), PE, 'topics')
    neg('bad-subscribe-empty-filter', 'SUBSCRIBE with an empty topic filter [MQTT-4.7.3-1].', 4, subscribe(4, 1, [('', 0)])[0], A, 'topics')
    neg('bad-subscribe-qos3', 'SUBSCRIBE requesting QoS 3.', 4, subscribe(4, 1, [('a', 3)])[0], A, 'topics.qos')
    neg('bad-subscribe-reserved-bits-v4', 'A 3.1.1 SUBSCRIBE with reserved option bits [MQTT-3-8.3-4].', 4,
        raw(0x82, [(b'\x00\x01', 'message id 1'), (b'\x00\x01a', 'topic filter "a"'), (b'\x04', 'options 0x04')]), A, 'topics.qos')
    neg('bad-subscribe-retain-handling-3', 'Retain handling 3 is a protocol error.', 5, subscribe(5, 1, [('a', 0, False, False, 3)])[0], PE, 'topics.retain_handling')
    neg('bad-subscribe-reserved-bits-v5', 'A 5.0 SUBSCRIBE with option bits 6-7 set (5.0 [MQTT-3.8.3-5]).', 5,
        raw(0x82, [(b'\x00\x01', 'message id 1'), (b'\x00', 'properties length 0'), (b'\x00\x01a', 'topic filter "a"'), (b'\x40', 'options 0x40')]), A, 'topics.options')
    neg('bad-subscribe-no-local-shared', 'No local on a shared subscription (5.0 [MQTT-3.8.3-4]).', 5,
        subscribe(5, 1, [('$share/g/a', 0, True)])[0], PE, 'topics.no_local')
    neg('bad-subscribe-hash-not-last', 'Topic filter "a/#/b" [MQTT-4.7.1-2].', 4, subscribe(4, 1, [('a/#/b', 0)])[0], 0x8F, 'topics')
    neg('bad-subscribe-plus-partial', 'Topic filter "a/b+" [MQTT-4.7.1-3].', 4, subscribe(4, 1, [('a/b+', 0)])[0], 0x8F, 'topics')
    neg('bad-subscribe-packet-id-0', 'SUBSCRIBE with packet id 0 [MQTT-2.3.1-1].', 4, subscribe(4, 0, [('a', 0)])[0], PE, 'message_id')
    neg('bad-subscribe-subscription-id-0', 'SUBSCRIBE with subscription identifier 0.', 5,
        subscribe(5, 1, [('a', 0)], props=[('subscription_identifier', 0)])[0], PE, 'properties.subscription_identifier')
    neg('bad-subscribe-two-subscription-ids', 'SUBSCRIBE with two subscription identifiers.', 5,
        subscribe(5, 1, [('a', 0)], props=[('subscription_identifier', 1), ('subscription_identifier', 2)])[0], PE, 'properties.subscription_identifier')
    neg('bad-subscribe-shared-no-filter', 'Shared subscription "$share/g" without a filter.', 5, subscribe(5, 1, [('$share/g', 0)])[0], 0x8F, 'topics')
    neg('bad-unsubscribe-no-topics', 'UNSUBSCRIBE without topic filters [MQTT-3.10.3-2].', 4, raw(0xA2, [(b'\x00\x01', 'message id 1')]), PE, 'topics')
    neg('bad-unsubscribe-bad-filter', 'UNSUBSCRIBE from "a/#/b".', 5, unsubscribe(5, 1, ['a/#/b'])[0], 0x8F, 'topics')
    neg('bad-puback-reason-code', 'PUBACK with 0x85, not a PUBACK reason code.', 5, ack(5, 4, 1, code=0x85)[0], PE, 'code')
    neg('bad-puback-packet-id-0', 'PUBACK for packet id 0 [MQTT-2.3.1-1].', 4, ack(4, 4, 0)[0], PE, 'message_id')
    neg('bad-suback-code-v4', 'A 3.1.1 SUBACK return code 0x03.', 4, suback(4, 9, 1, [3])[0], PE, 'codes')
    neg('bad-disconnect-reason-code', 'DISCONNECT with 0x01, not a DISCONNECT reason code.', 5, disc(5, 14, code=0x01)[0], PE, 'code')
    neg('bad-auth-reason-code', 'AUTH with 0x87, not an AUTH reason code.', 5, disc(5, 15, code=0x87)[0], PE, 'code')
    neg('bad-packet-too-large', 'A PUBLISH of 80 bytes against a maximum packet size of 64: rejected from the fixed header alone.', 4,
        publish(4, 'a/b', 'y' * 75)[0], 0x95, 'remaining_length', extra={'max_packet_size': 64})

main()
