// Sends a scenario's events to uptake serve with a real Segment-family Node.js client,
// then prints one JSON line: {"errors": [...]}. Driven by tests/test_collector_node.py.
//
//   node send.mjs segment|rudder URL WRITE_KEY SCENARIO
//
// The client is given URL explicitly (127.0.0.1: it sends nowhere else) and is flushed
// before the process ends.
import { Analytics } from '@segment/analytics-node'
import Rudder from '@rudderstack/rudder-sdk-node'

const [which, url, writeKey, scenario] = process.argv.slice(2)
const errors = []

function messages() {
  const list = []
  if (scenario === 'one-bad-event') {
    for (let i = 0; i < 20; i++) {
      // (rudder-sdk-node refuses an empty event name itself; Segment's client sends it)
      if (i === 7 && which === 'segment') list.push(['track', { userId: 'u1', event: '', messageId: `${which}-7` }])
      else if (i === 13) list.push(['group', { userId: 'u1', groupId: 42, messageId: `${which}-13` }])
      else list.push(['track', { userId: 'u1', event: 'Report Created', properties: { i }, messageId: `${which}-${i}` }])
    }
  } else if (scenario === 'no-timestamp') {
    for (let i = 0; i < 200; i++) {
      list.push(['track', { userId: `user-${i}`, event: 'Viewed', messageId: `${which}-${i}` }])
    }
  } else {
    throw new Error(`unknown scenario ${scenario}`)
  }
  return list
}

async function withSegment() {
  const client = new Analytics({ writeKey, host: url, path: '/v1/batch', flushAt: 50, flushInterval: 100, maxRetries: 2 })
  client.on('error', (err) => errors.push(String(err && (err.reason || err.message || err))))
  for (const [kind, fields] of messages()) client[kind](fields)
  await client.closeAndFlush({ timeout: 30000 })
}

async function withRudder() {
  const client = new Rudder(writeKey, {
    dataPlaneUrl: url,
    flushAt: 50,
    flushInterval: 100,
    retryCount: 2,
    logLevel: 'error',
    errorHandler: (err) => errors.push(String(err && (err.message || err))),
  })
  // Each call's callback runs once the batch holding it has been answered (or given up).
  const answered = messages().map(
    ([kind, fields]) => new Promise((resolve) => client[kind](fields, () => resolve()))
  )
  await client.flush()
  await Promise.all(answered)
}

await (which === 'segment' ? withSegment() : withRudder())
console.log(JSON.stringify({ errors }))
process.exit(0)
