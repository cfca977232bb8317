// Drives the real @chatbotkit/sdk against a running Parley and checks that every answer has the
// shape the SDK's own TypeScript types promise (dist/esm/types/api/v1.d.ts), plus Parley's
// contract on top (secret masking, meta merge, tenant isolation).
//
// Started by the Rust integration test `sdk_compat`, which starts Parley, seeds data and passes
// the PARLEY_* variables read below. The steps share state and run in file order.

import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { ChatBotKit } from '@chatbotkit/sdk'

// ---------------------------------------------------------------------------------------------
// Environment

function requireEnv(names) {
  const missing = names.filter((n) => !process.env[n])
  if (missing.length > 0) {
    throw new Error(`compat.test.mjs needs these environment variables: ${missing.join(', ')}`)
  }
  return Object.fromEntries(names.map((n) => [n, process.env[n]]))
}

const env = requireEnv([
  'PARLEY_URL',
  'PARLEY_TOKEN',
  'PARLEY_TOKEN_B',
  'PARLEY_PROVIDER_ID',
  'PARLEY_GOOD_PHONE_NUMBER_ID',
  'PARLEY_GOOD_ACCESS_TOKEN',
  'PARLEY_CONTACT_ID',
  'PARLEY_CONVERSATION_ID',
  'PARLEY_MESSAGE_ID',
  'PARLEY_SEEDED_INTEGRATION_ID',
])

// retries: 0 because the SDK otherwise silently retries 429/5xx answers three times, which would
// hide a flaky server; timeout so a hung request fails the test instead of hanging it.
const clientOptions = { baseUrl: env.PARLEY_URL, retries: 0, timeout: 15_000 }
const cbk = new ChatBotKit({ secret: env.PARLEY_TOKEN, ...clientOptions })
const cbkB = new ChatBotKit({ secret: env.PARLEY_TOKEN_B, ...clientOptions })

// Tags everything this run creates, so meta filters select exactly our rows.
const RUN = `sdk-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`
console.log(`# sdk compat run tag: ${RUN} (match it with meta.run in the server's data)`)

// The SDK encodes `model` as a string; Parley parses it and must keep name and parameters.
const MODEL = 'gpt-4o-mini/temperature=0.2/maxTokens=512'

// Ids created by earlier steps and used by later ones.
const state = {}

// ---------------------------------------------------------------------------------------------
// Shape checks: what the SDK's types promise for each resource

const DAY_MS = 24 * 60 * 60 * 1000

// A millisecond timestamp: an integer past 2001 (so not seconds) and not in the future.
function assertMillis(value, what) {
  assert.equal(typeof value, 'number', `${what} must be a number, got ${JSON.stringify(value)}`)
  assert.ok(Number.isInteger(value), `${what} must be an integer (ms), got ${value}`)
  assert.ok(value > 1e12, `${what} looks like seconds, not milliseconds: ${value}`)
  assert.ok(value < Date.now() + DAY_MS, `${what} is in the future: ${value}`)
}

// The SDK types optional fields as `T | undefined`; Parley (like ChatBotKit for accessToken)
// may also send null for an unset value. Anything else must have the declared JS type.
function assertOptional(obj, key, type, what) {
  const v = obj[key]
  if (v === undefined || v === null) return
  assert.equal(typeof v, type, `${what}.${key} must be a ${type} when set, got ${JSON.stringify(v)}`)
}

function assertString(value, what) {
  assert.equal(typeof value, 'string', `${what} must be a string, got ${JSON.stringify(value)}`)
  assert.ok(value.length > 0, `${what} must not be empty`)
}

// Fields every ChatBotKit instance has: id, createdAt, updatedAt, and optional name/description/meta.
function assertInstance(obj, what) {
  assert.ok(obj && typeof obj === 'object' && !Array.isArray(obj), `${what} must be an object`)
  assertString(obj.id, `${what}.id`)
  assertMillis(obj.createdAt, `${what}.createdAt`)
  assertMillis(obj.updatedAt, `${what}.updatedAt`)
  assert.ok(obj.updatedAt >= obj.createdAt, `${what}.updatedAt is before createdAt`)
  assertOptional(obj, 'name', 'string', what)
  assertOptional(obj, 'description', 'string', what)
  if (obj.meta !== undefined && obj.meta !== null) {
    assert.ok(typeof obj.meta === 'object' && !Array.isArray(obj.meta), `${what}.meta must be an object`)
  }
}

// create/update/delete/setup answer `{id}`.
function assertIdResponse(res, expectedId, what) {
  assert.ok(res && typeof res === 'object', `${what} must answer an object, got ${JSON.stringify(res)}`)
  assertString(res.id, `${what}.id`)
  if (expectedId !== undefined) assert.equal(res.id, expectedId, `${what} answered another id`)
  return res.id
}

// Lists answer `{items: [...], cursor}`; the types make cursor a required string, so it must be
// there whenever the page has items (it is what the next page is asked for with).
function assertList(page, checkItem, what) {
  assert.ok(page && typeof page === 'object', `${what} must answer an object`)
  assert.ok(Array.isArray(page.items), `${what}.items must be an array, got ${JSON.stringify(page)}`)
  page.items.forEach((item, i) => checkItem(item, `${what}.items[${i}]`))
  if (page.items.length > 0) assertString(page.cursor, `${what}.cursor`)
  else assertOptional(page, 'cursor', 'string', what)
  return page.items
}

const VISIBILITIES = ['private', 'protected', 'public']
const MESSAGE_TYPES = ['user', 'bot', 'reasoning', 'context', 'instruction', 'backstory', 'activity', 'checkpoint']
const MASK = '********'

function checkBot(b, what) {
  assertInstance(b, what)
  for (const k of ['model', 'backstory', 'datasetId', 'skillsetId', 'blueprintId']) assertOptional(b, k, 'string', what)
  for (const k of ['privacy', 'moderation']) assertOptional(b, k, 'boolean', what)
  if (b.visibility != null) assert.ok(VISIBILITIES.includes(b.visibility), `${what}.visibility: ${b.visibility}`)
}

function checkWhatsApp(w, what) {
  assertInstance(w, what)
  // Generated when the integration is created, handed to Meta as the webhook verify token.
  assertString(w.verifyToken, `${what}.verifyToken`)
  assert.ok(w.verifyToken.length >= 22, `${what}.verifyToken is too short: ${w.verifyToken}`)
  assert.match(w.verifyToken, /^[A-Za-z0-9_-]+$/, `${what}.verifyToken must be URL-safe`)
  // The secret never leaves the server: the mask when set, null when not.
  assert.ok(w.accessToken === MASK || w.accessToken === null, `${what}.accessToken must be "${MASK}" or null, got ${JSON.stringify(w.accessToken)}`)
  for (const k of ['botId', 'blueprintId', 'phoneNumberId', 'allowFrom']) assertOptional(w, k, 'string', what)
  for (const k of ['contactCollection', 'attachments']) assertOptional(w, k, 'boolean', what)
  assertOptional(w, 'sessionDuration', 'number', what)
}

function checkContact(c, what) {
  assertInstance(c, what)
  assertString(c.fingerprint, `${what}.fingerprint`)
  for (const k of ['email', 'phone', 'nick', 'preferences']) assertOptional(c, k, 'string', what)
  if (c.verifiedAt != null) assertMillis(c.verifiedAt, `${what}.verifiedAt`)
}

function checkConversation(c, what) {
  assertInstance(c, what)
  for (const k of ['contactId', 'taskId', 'spaceId', 'botId', 'model', 'backstory']) assertOptional(c, k, 'string', what)
}

function checkMessage(m, what) {
  assertInstance(m, what)
  assert.ok(MESSAGE_TYPES.includes(m.type), `${what}.type must be one of ${MESSAGE_TYPES}, got ${JSON.stringify(m.type)}`)
  assert.equal(typeof m.text, 'string', `${what}.text must be a string`)
}

function checkEvent(e, what) {
  assertInstance(e, what)
  assertString(e.type, `${what}.type`)
  for (const k of ['conversationId', 'contactId', 'botId', 'whatsappIntegrationId']) assertOptional(e, k, 'string', what)
}

// ---------------------------------------------------------------------------------------------
// Error and lookup helpers

// The SDK turns a non-2xx answer into a FetchError (from @chatbotkit/fetch) carrying the body's
// `message` and `code`; it keeps no HTTP status. A body that is not JSON would surface as
// code GENERIC_ERROR, so checking the code also checks Parley's error shape.
async function rejectsWith(code, call, what) {
  await assert.rejects(
    async () => {
      await call()
    },
    (err) => {
      assert.equal(err?.name, 'FetchError', `${what}: expected the SDK's FetchError, got ${err?.stack ?? err}`)
      assert.equal(err.code, code, `${what}: expected code ${code}, got ${err.code} ("${err.message}")`)
      assertString(err.message, `${what}: error message`)
      return true
    },
    `${what}: expected a ${code} rejection, but the call succeeded`,
  )
}

// An id of the same kind as `id` that names nothing: same prefix, zeroed random part.
function missingIdLike(id) {
  const cut = id.lastIndexOf('_') + 1
  return id.slice(0, cut) + '0'.repeat(id.length - cut)
}

// Pages through a list (by cursor) until `predicate` matches; lists are newest first, so this
// finds seeded rows even when the steps before added many newer ones.
async function findInList(list, checkItem, predicate, what, maxPages = 20) {
  let cursor
  for (let n = 0; n < maxPages; n++) {
    const page = await list({ take: 100, ...(cursor ? { cursor } : {}) })
    const items = assertList(page, checkItem, `${what} page ${n + 1}`)
    const found = items.find(predicate)
    if (found || items.length < 100 || !page.cursor) return found
    cursor = page.cursor
  }
  return undefined
}

const ids = (items) => items.map((x) => x.id)

// ---------------------------------------------------------------------------------------------
// Bots

describe('bot', () => {
  it('create answers {id}', async () => {
    const res = await cbk.bot.create({
      name: 'Compat Bot',
      description: 'created by the SDK compatibility test',
      backstory: 'You are a helpful assistant.',
      model: MODEL,
      providerId: env.PARLEY_PROVIDER_ID, // Parley's own field, passed through by the SDK
      meta: { run: RUN, purpose: 'compat' },
      visibility: 'private',
      privacy: false,
      moderation: false,
    })
    state.botId = assertIdResponse(res, undefined, 'bot.create')
  })

  it('create accepts a bot without providerId (a second bot, for paging)', async () => {
    const res = await cbk.bot.create({ name: 'Compat Bot 2', model: 'gpt-4o-mini', meta: { run: RUN } })
    state.bot2Id = assertIdResponse(res, undefined, 'bot.create (no provider)')
    assert.notEqual(state.bot2Id, state.botId)
  })

  it('create rejects a malformed model string with BAD_REQUEST', async () => {
    await rejectsWith('BAD_REQUEST', () => cbk.bot.create({ name: 'x', model: 'gpt-4o/temperature' }), 'bot.create bad model')
  })

  it('create rejects an unknown providerId with NOT_FOUND', async () => {
    await rejectsWith(
      'NOT_FOUND',
      () => cbk.bot.create({ name: 'x', model: MODEL, providerId: missingIdLike(env.PARLEY_PROVIDER_ID) }),
      'bot.create unknown provider',
    )
  })

  it('update answers {id} and changes only the fields sent', async () => {
    const res = await cbk.bot.update(state.botId, {
      name: 'Compat Bot (renamed)',
      backstory: 'You answer briefly.',
    })
    assertIdResponse(res, state.botId, 'bot.update')
  })

  it('fetch returns the bot as the SDK types describe it', async () => {
    const bot = await cbk.bot.fetch(state.botId)
    checkBot(bot, 'bot.fetch')
    assert.equal(bot.id, state.botId)
    assert.equal(bot.name, 'Compat Bot (renamed)')
    assert.equal(bot.backstory, 'You answer briefly.')
    // Untouched by the update:
    assert.equal(bot.description, 'created by the SDK compatibility test')
    assert.equal(bot.providerId, env.PARLEY_PROVIDER_ID)
    assert.equal(bot.visibility, 'private')
    assert.equal(bot.privacy, false)
    assert.equal(bot.moderation, false)
    assert.deepEqual(bot.meta, { run: RUN, purpose: 'compat' })
    // The model keeps its name and parameters (Parley may reorder the parameters).
    const [name, ...params] = bot.model.split('/')
    assert.equal(name, 'gpt-4o-mini')
    assert.deepEqual(params.sort(), ['maxTokens=512', 'temperature=0.2'])
    assert.ok(Math.abs(bot.createdAt - Date.now()) < 10 * 60 * 1000, 'createdAt is not about now')
  })

  it('fetch of an unknown bot rejects with NOT_FOUND', async () => {
    await rejectsWith('NOT_FOUND', () => cbk.bot.fetch(missingIdLike(state.botId)), 'bot.fetch unknown')
  })

  it('list returns {items, cursor} including the bot', async () => {
    const items = assertList(await cbk.bot.list(), checkBot, 'bot.list')
    assert.ok(ids(items).includes(state.botId), 'bot.list misses the created bot')
  })

  it('list filters by meta, pages by cursor and take, and orders desc by default', async () => {
    // The SDK sends meta as `meta.run=...` query parameters.
    const all = assertList(await cbk.bot.list({ meta: { run: RUN } }), checkBot, 'bot.list meta')
    assert.deepEqual(ids(all), [state.bot2Id, state.botId], 'meta filter or default desc order is wrong')

    const first = await cbk.bot.list({ meta: { run: RUN }, take: 1 })
    assert.deepEqual(ids(assertList(first, checkBot, 'bot.list take=1')), [state.bot2Id])
    const second = await cbk.bot.list({ meta: { run: RUN }, take: 1, cursor: first.cursor })
    assert.deepEqual(ids(assertList(second, checkBot, 'bot.list page 2')), [state.botId])

    const asc = await cbk.bot.list({ meta: { run: RUN }, order: 'asc' })
    assert.deepEqual(ids(assertList(asc, checkBot, 'bot.list asc')), [state.botId, state.bot2Id])
  })

  it('list rejects take outside 1..100 and an unknown order with BAD_REQUEST', async () => {
    await rejectsWith('BAD_REQUEST', () => cbk.bot.list({ take: 0 }), 'bot.list take=0')
    await rejectsWith('BAD_REQUEST', () => cbk.bot.list({ take: 101 }), 'bot.list take=101')
    await rejectsWith('BAD_REQUEST', () => cbk.bot.list({ order: 'sideways' }), 'bot.list order=sideways')
  })
})

// ---------------------------------------------------------------------------------------------
// WhatsApp integrations

describe('integration.whatsapp', () => {
  const wa = () => cbk.integration.whatsapp

  it('create answers {id}', async () => {
    const res = await wa().create({
      name: 'Compat WhatsApp',
      description: 'sales line',
      botId: state.botId,
      phoneNumberId: env.PARLEY_GOOD_PHONE_NUMBER_ID,
      accessToken: env.PARLEY_GOOD_ACCESS_TOKEN,
      contactCollection: true,
      sessionDuration: 3_600_000,
      attachments: false,
      allowFrom: '*',
      meta: { run: RUN, team: 'sales', tier: 'gold', region: 'eu' },
    })
    state.waId = assertIdResponse(res, undefined, 'whatsapp.create')
  })

  it('create of a second integration without an access token (other team)', async () => {
    const res = await wa().create({ name: 'Compat WhatsApp 2', botId: state.botId, meta: { run: RUN, team: 'support' } })
    state.wa2Id = assertIdResponse(res, undefined, 'whatsapp.create (2)')
  })

  it('fetch masks the access token and shows verifyToken, callbackUrl and status', async () => {
    const w = await wa().fetch(state.waId)
    checkWhatsApp(w, 'whatsapp.fetch')
    assert.equal(w.id, state.waId)
    assert.equal(w.accessToken, MASK, 'a set access token must come back masked')
    assert.equal(w.name, 'Compat WhatsApp')
    assert.equal(w.description, 'sales line')
    assert.equal(w.botId, state.botId)
    assert.equal(w.phoneNumberId, env.PARLEY_GOOD_PHONE_NUMBER_ID)
    assert.equal(w.contactCollection, true)
    assert.equal(w.sessionDuration, 3_600_000)
    assert.equal(w.attachments, false)
    assert.equal(w.allowFrom, '*')
    assert.deepEqual(w.meta, { run: RUN, team: 'sales', tier: 'gold', region: 'eu' })
    // Read-only extras Parley adds: where Meta must send webhooks, and the setup state.
    assertString(w.callbackUrl, 'whatsapp.fetch.callbackUrl')
    assert.ok(
      w.callbackUrl.endsWith(`/api/v1/integration/whatsapp/${state.waId}/callback`),
      `unexpected callbackUrl ${w.callbackUrl}`,
    )
    assert.notEqual(w.status, undefined, 'whatsapp.fetch.status is missing')
    state.verifyToken = w.verifyToken

    const w2 = await wa().fetch(state.wa2Id)
    checkWhatsApp(w2, 'whatsapp.fetch (2)')
    assert.equal(w2.accessToken, null, 'an unset access token must come back as null')
    assert.notEqual(w2.verifyToken, state.verifyToken, 'each integration needs its own verifyToken')
  })

  it('update with the mask keeps the token and merges meta (null removes a key)', async () => {
    const res = await wa().update(state.waId, {
      name: 'Compat WhatsApp (renamed)',
      accessToken: MASK, // what a client echoes back from fetch: "leave it as is"
      meta: { tier: 'platinum', region: null, channel: 'whatsapp' },
    })
    assertIdResponse(res, state.waId, 'whatsapp.update')

    const w = await wa().fetch(state.waId)
    checkWhatsApp(w, 'whatsapp.fetch after update')
    assert.equal(w.name, 'Compat WhatsApp (renamed)')
    assert.equal(w.description, 'sales line', 'fields not sent must stay')
    assert.equal(w.phoneNumberId, env.PARLEY_GOOD_PHONE_NUMBER_ID)
    assert.equal(w.accessToken, MASK)
    assert.deepEqual(w.meta, { run: RUN, team: 'sales', tier: 'platinum', channel: 'whatsapp' })
    assert.equal(w.verifyToken, state.verifyToken, 'verifyToken must never change')
    assert.ok(w.updatedAt >= w.createdAt)
  })

  it('setup succeeds with the stored token (so the mask did not overwrite it)', async () => {
    assertIdResponse(await wa().setup(state.waId), state.waId, 'whatsapp.setup')
  })

  it('update with accessToken null clears the token', async () => {
    assertIdResponse(await wa().update(state.waId, { accessToken: null }), state.waId, 'whatsapp.update null')
    const w = await wa().fetch(state.waId)
    checkWhatsApp(w, 'whatsapp.fetch after clearing')
    assert.equal(w.accessToken, null)
    assert.equal(w.verifyToken, state.verifyToken)
  })

  it('list masks secrets and returns the same verifyToken', async () => {
    const items = assertList(await wa().list(), checkWhatsApp, 'whatsapp.list')
    const mine = items.find((x) => x.id === state.waId)
    assert.ok(mine, 'whatsapp.list misses the integration')
    assert.equal(mine.verifyToken, state.verifyToken)
    assert.equal(mine.accessToken, null)
  })

  it('list filters by meta', async () => {
    const sales = assertList(await wa().list({ meta: { team: 'sales' } }), checkWhatsApp, 'whatsapp.list team=sales')
    assert.ok(ids(sales).includes(state.waId), 'meta filter dropped a matching integration')
    assert.ok(!ids(sales).includes(state.wa2Id), 'meta filter kept an integration of another team')
    for (const x of sales) assert.equal(x.meta?.team, 'sales', `meta filter returned ${x.id}`)

    const support = assertList(await wa().list({ meta: { team: 'support', run: RUN } }), checkWhatsApp, 'whatsapp.list team=support')
    assert.deepEqual(ids(support), [state.wa2Id])
  })

  it('setup with a token Meta refuses rejects with UNPROCESSABLE_ENTITY', async () => {
    await wa().update(state.waId, { accessToken: 'not-the-right-token' })
    assert.equal((await wa().fetch(state.waId)).accessToken, MASK)
    await rejectsWith('UNPROCESSABLE_ENTITY', () => wa().setup(state.waId), 'whatsapp.setup bad token')
  })

  it('delete answers {id}, then fetch rejects with NOT_FOUND', async () => {
    assertIdResponse(await wa().delete(state.waId), state.waId, 'whatsapp.delete')
    await rejectsWith('NOT_FOUND', () => wa().fetch(state.waId), 'whatsapp.fetch after delete')
    const items = assertList(await wa().list(), checkWhatsApp, 'whatsapp.list after delete')
    assert.ok(!ids(items).includes(state.waId), 'deleted integration still listed')
  })
})

// ---------------------------------------------------------------------------------------------
// Contacts (seeded: a WhatsApp contact with one conversation)

describe('contact', () => {
  it('list includes the seeded contact', async () => {
    const found = await findInList((q) => cbk.contact.list(q), checkContact, (c) => c.id === env.PARLEY_CONTACT_ID, 'contact.list')
    assert.ok(found, 'contact.list misses the seeded contact')
  })

  it('fetch returns the contact with its fingerprint', async () => {
    const c = await cbk.contact.fetch(env.PARLEY_CONTACT_ID)
    checkContact(c, 'contact.fetch')
    assert.equal(c.id, env.PARLEY_CONTACT_ID)
    state.fingerprint = c.fingerprint
  })

  it('update answers {id} and fetch shows the new fields', async () => {
    const res = await cbk.contact.update(env.PARLEY_CONTACT_ID, {
      name: 'Ada Lovelace',
      email: 'ada@example.com',
      nick: 'ada',
      meta: { run: RUN, source: 'sdk-compat' },
    })
    assertIdResponse(res, env.PARLEY_CONTACT_ID, 'contact.update')

    const c = await cbk.contact.fetch(env.PARLEY_CONTACT_ID)
    checkContact(c, 'contact.fetch after update')
    assert.equal(c.name, 'Ada Lovelace')
    assert.equal(c.email, 'ada@example.com')
    assert.equal(c.nick, 'ada')
    assert.equal(c.meta?.run, RUN)
    assert.equal(c.meta?.source, 'sdk-compat')
    assert.equal(c.fingerprint, state.fingerprint, 'fingerprint must not change')
  })

  it('list filters by meta', async () => {
    const items = assertList(await cbk.contact.list({ meta: { run: RUN } }), checkContact, 'contact.list meta')
    assert.deepEqual(ids(items), [env.PARLEY_CONTACT_ID])
  })

  it('conversation.list lists the conversations of the contact', async () => {
    const items = assertList(
      await cbk.contact.conversation.list(env.PARLEY_CONTACT_ID),
      checkConversation,
      'contact.conversation.list',
    )
    assert.ok(ids(items).includes(env.PARLEY_CONVERSATION_ID), 'misses the seeded conversation')
    for (const c of items) {
      if (c.contactId != null) assert.equal(c.contactId, env.PARLEY_CONTACT_ID)
    }
  })

  it('fetch of an unknown contact rejects with NOT_FOUND', async () => {
    await rejectsWith('NOT_FOUND', () => cbk.contact.fetch(missingIdLike(env.PARLEY_CONTACT_ID)), 'contact.fetch unknown')
  })
})

// ---------------------------------------------------------------------------------------------
// Conversations and messages

describe('conversation', () => {
  it('list includes the seeded conversation', async () => {
    const found = await findInList(
      (q) => cbk.conversation.list(q),
      checkConversation,
      (c) => c.id === env.PARLEY_CONVERSATION_ID,
      'conversation.list',
    )
    assert.ok(found, 'conversation.list misses the seeded conversation')
  })

  it('fetch returns the conversation of the contact', async () => {
    const c = await cbk.conversation.fetch(env.PARLEY_CONVERSATION_ID)
    checkConversation(c, 'conversation.fetch')
    assert.equal(c.id, env.PARLEY_CONVERSATION_ID)
    assert.equal(c.contactId, env.PARLEY_CONTACT_ID)
  })

  it('message.list includes the seeded message', async () => {
    const items = assertList(
      await cbk.conversation.message.list(env.PARLEY_CONVERSATION_ID),
      checkMessage,
      'conversation.message.list',
    )
    const m = items.find((x) => x.id === env.PARLEY_MESSAGE_ID)
    assert.ok(m, 'message.list misses the seeded message')
    assert.equal(m.type, 'user')
    assert.equal(m.text, 'hello from whatsapp')
  })

  it('message.fetch returns the message', async () => {
    const m = await cbk.conversation.message.fetch(env.PARLEY_CONVERSATION_ID, env.PARLEY_MESSAGE_ID)
    checkMessage(m, 'conversation.message.fetch')
    assert.equal(m.id, env.PARLEY_MESSAGE_ID)
    assert.equal(m.type, 'user')
    assert.equal(m.text, 'hello from whatsapp')
  })

  it('fetch of an unknown conversation or message rejects with NOT_FOUND', async () => {
    await rejectsWith(
      'NOT_FOUND',
      () => cbk.conversation.fetch(missingIdLike(env.PARLEY_CONVERSATION_ID)),
      'conversation.fetch unknown',
    )
    await rejectsWith(
      'NOT_FOUND',
      () => cbk.conversation.message.fetch(env.PARLEY_CONVERSATION_ID, missingIdLike(env.PARLEY_MESSAGE_ID)),
      'conversation.message.fetch unknown',
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Event log

describe('event.log', () => {
  it('list returns the seeded WhatsApp event', async () => {
    const e = await findInList(
      (q) => cbk.event.log.list(q),
      checkEvent,
      (x) => x.type === 'whatsapp.message.received' && x.whatsappIntegrationId === env.PARLEY_SEEDED_INTEGRATION_ID,
      'event.log.list',
    )
    assert.ok(e, 'event.log.list misses the seeded whatsapp.message.received entry')
  })
})

// ---------------------------------------------------------------------------------------------
// Tenant isolation: tenant B sees none of tenant A's rows, by id or in lists

describe('tenant isolation', () => {
  it("fetch of tenant A's rows by id rejects with NOT_FOUND for tenant B", async () => {
    await rejectsWith('NOT_FOUND', () => cbkB.bot.fetch(state.botId), 'B bot.fetch')
    await rejectsWith('NOT_FOUND', () => cbkB.integration.whatsapp.fetch(state.wa2Id), 'B whatsapp.fetch')
    await rejectsWith('NOT_FOUND', () => cbkB.contact.fetch(env.PARLEY_CONTACT_ID), 'B contact.fetch')
    await rejectsWith('NOT_FOUND', () => cbkB.conversation.fetch(env.PARLEY_CONVERSATION_ID), 'B conversation.fetch')
    await rejectsWith(
      'NOT_FOUND',
      () => cbkB.conversation.message.fetch(env.PARLEY_CONVERSATION_ID, env.PARLEY_MESSAGE_ID),
      'B conversation.message.fetch',
    )
    await rejectsWith('NOT_FOUND', () => cbkB.conversation.message.list(env.PARLEY_CONVERSATION_ID), 'B conversation.message.list')
  })

  it("update and delete of tenant A's rows reject with NOT_FOUND and change nothing", async () => {
    await rejectsWith('NOT_FOUND', () => cbkB.bot.update(state.botId, { name: 'hijacked' }), 'B bot.update')
    await rejectsWith('NOT_FOUND', () => cbkB.bot.delete(state.botId), 'B bot.delete')
    await rejectsWith('NOT_FOUND', () => cbkB.integration.whatsapp.delete(state.wa2Id), 'B whatsapp.delete')
    const bot = await cbk.bot.fetch(state.botId)
    assert.equal(bot.name, 'Compat Bot (renamed)')
  })

  it("tenant B's lists do not contain tenant A's ids", async () => {
    const aIds = new Set([state.botId, state.bot2Id, state.wa2Id, env.PARLEY_CONTACT_ID, env.PARLEY_CONVERSATION_ID])
    const lists = {
      'B bot.list': [await cbkB.bot.list({ take: 100 }), checkBot],
      'B whatsapp.list': [await cbkB.integration.whatsapp.list({ take: 100 }), checkWhatsApp],
      'B contact.list': [await cbkB.contact.list({ take: 100 }), checkContact],
      'B conversation.list': [await cbkB.conversation.list({ take: 100 }), checkConversation],
      'B event.log.list': [await cbkB.event.log.list({ take: 100 }), checkEvent],
    }
    for (const [what, [page, check]] of Object.entries(lists)) {
      for (const item of assertList(page, check, what)) {
        assert.ok(!aIds.has(item.id), `${what} leaks ${item.id} of tenant A`)
      }
    }
    const events = lists['B event.log.list'][0].items
    assert.ok(
      !events.some((e) => e.whatsappIntegrationId === env.PARLEY_SEEDED_INTEGRATION_ID),
      "B event.log.list leaks tenant A's event",
    )
    // And the meta tag of this run, which only tenant A's rows carry.
    const tagged = assertList(await cbkB.bot.list({ meta: { run: RUN } }), checkBot, 'B bot.list meta')
    assert.deepEqual(tagged, [])
  })
})

// ---------------------------------------------------------------------------------------------
// Deletes. Kept to the end because the isolation checks need tenant A's rows to still exist
// (otherwise NOT_FOUND for tenant B would prove nothing).

describe('delete', () => {
  it('conversation.delete answers {id}; the conversation and its messages are gone', async () => {
    const res = await cbk.conversation.delete(env.PARLEY_CONVERSATION_ID)
    assertIdResponse(res, env.PARLEY_CONVERSATION_ID, 'conversation.delete')
    await rejectsWith('NOT_FOUND', () => cbk.conversation.fetch(env.PARLEY_CONVERSATION_ID), 'conversation.fetch after delete')
    await rejectsWith(
      'NOT_FOUND',
      () => cbk.conversation.message.fetch(env.PARLEY_CONVERSATION_ID, env.PARLEY_MESSAGE_ID),
      'message.fetch after delete',
    )
  })

  it('contact.delete answers {id}; fetch then rejects with NOT_FOUND', async () => {
    assertIdResponse(await cbk.contact.delete(env.PARLEY_CONTACT_ID), env.PARLEY_CONTACT_ID, 'contact.delete')
    await rejectsWith('NOT_FOUND', () => cbk.contact.fetch(env.PARLEY_CONTACT_ID), 'contact.fetch after delete')
  })

  it('whatsapp.delete of the second integration', async () => {
    assertIdResponse(await cbk.integration.whatsapp.delete(state.wa2Id), state.wa2Id, 'whatsapp.delete (2)')
  })

  it('bot.delete answers {id}; fetch then rejects and a second delete is NOT_FOUND', async () => {
    assertIdResponse(await cbk.bot.delete(state.bot2Id), state.bot2Id, 'bot.delete (2)')
    assertIdResponse(await cbk.bot.delete(state.botId), state.botId, 'bot.delete')
    await rejectsWith('NOT_FOUND', () => cbk.bot.fetch(state.botId), 'bot.fetch after delete')
    await rejectsWith('NOT_FOUND', () => cbk.bot.delete(state.botId), 'bot.delete twice')
    const items = assertList(await cbk.bot.list({ meta: { run: RUN } }), checkBot, 'bot.list after delete')
    assert.deepEqual(items, [])
  })
})
