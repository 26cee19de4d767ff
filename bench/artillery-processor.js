// What Artillery 2 lacks for the guide's scenario (bench/artillery-load-test.yml):
//
// - `{{ $timestamp }}` is not an Artillery variable (it renders as "undefined") and
//   `$randomNumber(1, N)` takes only literal bounds, so `nextSend` sets `$timestamp` and a random
//   `recipient` among user_1 … user_{recipients} before every `send_message`.
// - A `send:` step never looks at the relay's answers, so a run where every frame is refused
//   still ends with 0 failed virtual users. `watchReplies` counts the relay's answers by type and
//   error code (`nano.replies.*`, `nano.errors.*` in Artillery's report) and `awaitReplies`, the
//   last step of each scenario, waits until every frame has been answered and fails the virtual
//   user if any answer was an `error` (or the answers stop coming).
// - `nano.frames.send_message` / `nano.frames.key_exchange` count the frames sent, so that
//   bench/artillery.sh can compare them with the relay's `nano_messenger_messages_processed_total`.
'use strict';

// How long `awaitReplies` waits for outstanding answers.
const REPLY_TIMEOUT_MS = 10000;

function counter(events, name) {
  events.emit('counter', name, 1);
}

function state(context) {
  if (!context._nano) {
    context._nano = { expected: 0, answered: 0, errors: [], closed: false, wake: null };
  }
  return context._nano;
}

// First step of each scenario: listen to everything the relay sends on this connection.
function watchReplies(context, events, next) {
  const s = state(context);
  const wake = () => {
    if (s.wake) s.wake();
  };
  context.ws.on('message', (data) => {
    let frame;
    try {
      frame = JSON.parse(String(data));
    } catch (e) {
      counter(events, 'nano.replies.unparsable');
      s.answered += 1;
      s.errors.push('unparsable reply');
      return wake();
    }
    // `challenge` answers only `hello` (a login), which the load test never sends.
    if (frame.type === 'challenge') return undefined;
    counter(events, `nano.replies.${frame.type}`);
    s.answered += 1;
    if (frame.type === 'error') {
      counter(events, `nano.errors.${frame.code}`);
      s.errors.push(`relay error ${frame.code}`);
    }
    return wake();
  });
  context.ws.on('close', (code) => {
    s.closed = code;
    wake();
  });
  return next();
}

// Before each `send_message`: the recipient and `$timestamp` of the guide's frame.
function nextSend(context, events, next) {
  const n = Number(context.vars.recipients);
  const users = Number.isInteger(n) && n > 0 ? n : 1000;
  context.vars.recipient = `user_${1 + Math.floor(Math.random() * users)}`;
  context.vars.$timestamp = Date.now();
  state(context).expected += 1;
  counter(events, 'nano.frames.send_message');
  return next();
}

// Before each `key_exchange`.
function nextKeyExchange(context, events, next) {
  state(context).expected += 1;
  counter(events, 'nano.frames.key_exchange');
  return next();
}

// Last step of each scenario: every frame answered, none with an error.
// (An async function: Artillery's ws engine fails the virtual user when it rejects.)
async function awaitReplies(context) {
  const s = state(context);
  const deadline = Date.now() + REPLY_TIMEOUT_MS;
  while (s.answered < s.expected && s.closed === false && Date.now() < deadline) {
    await new Promise((resolve) => {
      const t = setTimeout(resolve, deadline - Date.now());
      s.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
    s.wake = null;
  }
  if (s.errors.length > 0) {
    throw new Error(s.errors[0]);
  }
  if (s.answered < s.expected) {
    const why = s.closed === false ? 'no answer in time' : `connection closed (${s.closed})`;
    throw new Error(`${s.expected - s.answered} of ${s.expected} frames unanswered: ${why}`);
  }
}

module.exports = { watchReplies, nextSend, nextKeyExchange, awaitReplies };
