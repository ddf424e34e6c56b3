// The search page: a question in, answers out, over this server's own HTTP API
// (`/page/config`, `/v1/info`, `/v1/search`, `/v1/answers/{id}`).
//
// Nothing from a post, a query or the server is ever inserted as HTML: text reaches the DOM
// as textContent, math through MathText.render (math.js), links only as this server's
// --site-url plus `/a/{numeric id}`. The Content-Security-Policy that serves this file allows
// no inline script and no other origin, so even a mistake here could not run a post's script.
(function () {
  'use strict';

  const TOKEN_KEY = 'mathrank-token';
  const byId = (id) => document.getElementById(id);
  const state = { siteUrl: null, auth: false, token: null, info: null, full: new Map(), generation: 0, timer: 0 };

  function make(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function say(node, text) {
    node.textContent = text || '';
    node.hidden = !text;
  }

  // ---- The token: kept in sessionStorage, so it lives as long as this tab.

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY);
    } catch (_) {
      return null;
    }
  }

  function keepToken(token) {
    state.token = token;
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // Storage off: the token lasts until the page reloads.
    }
  }

  function askToken(message) {
    byId('search-form').hidden = true;
    byId('token-form').hidden = false;
    say(byId('token-error'), message);
    byId('token').focus();
  }

  // ---- Calls to this server.

  async function call(method, path, body, extraHeaders) {
    const headers = Object.assign({ Accept: 'application/json' }, extraHeaders || {});
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (state.token) headers.Authorization = 'Bearer ' + state.token;
    const started = performance.now();
    let response;
    try {
      response = await fetch(path, {
        method: method,
        headers: headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch (err) {
      return { status: 0, error: 'cannot reach the server: ' + err.message };
    }
    let json = null;
    try {
      json = await response.json();
    } catch (_) {
      // Not JSON: the status says enough.
    }
    const result = { status: response.status, json: json, ms: performance.now() - started };
    if (!response.ok) {
      result.error = (json && json.error && json.error.message) || 'HTTP ' + response.status;
    }
    return result;
  }

  async function loadInfo() {
    const info = await call('GET', '/v1/info');
    if (info.status === 401) {
      keepToken(null);
      askToken('The server refused that token; check it and try again.');
      return;
    }
    byId('token-form').hidden = true;
    byId('search-form').hidden = false;
    byId('forget-token').hidden = !state.auth;
    if (info.error) {
      say(byId('error'), 'The server is not ready: ' + info.error);
      return;
    }
    say(byId('error'), '');
    state.info = info.json;
    applyInfo();
  }

  function modelLoaded() {
    return Boolean(state.info && state.info.model && state.info.model.loaded);
  }

  function applyInfo() {
    const loaded = modelLoaded();
    const rerank = byId('rerank');
    rerank.checked = loaded;
    rerank.disabled = !loaded;
    byId('fusion').disabled = !loaded;
    byId('fusion-weight').disabled = !loaded;
    const limits = (state.info && state.info.limits) || {};
    if (limits.maxRerankDepth) byId('depth').max = String(limits.maxRerankDepth);
    if (limits.maxTopK) byId('top-k').max = String(limits.maxTopK);
    say(byId('notice'), loaded ? '' : bm25Only());
  }

  function bm25Only() {
    return 'This server runs BM25 only (it was started without a reranking model): hits are in BM25 order and have no relevance.';
  }

  // ---- The request, from the form.

  function whole(id, label) {
    const text = byId(id).value.trim();
    if (!text) return undefined;
    const value = Number(text);
    if (!Number.isInteger(value)) throw new Error(label + ' must be a whole number');
    return value;
  }

  function tags(id) {
    return byId(id)
      .value.split(/[\s,]+/)
      .map((tag) => tag.trim().toLowerCase())
      .filter(Boolean);
  }

  // A date input as Unix seconds (UTC midnight), `days` later.
  function dateSeconds(id, days) {
    const value = byId(id).value;
    if (!value) return undefined;
    const [year, month, day] = value.split('-').map(Number);
    return Date.UTC(year, month - 1, day + days) / 1000;
  }

  function buildRequest(query) {
    const request = {
      query: query,
      topK: whole('top-k', 'Hits (top_k)') || 10,
      rerankDepth: whole('depth', 'Rerank depth') || 30,
      filters: {
        tagsAny: tags('tags-any'),
        tagsAll: tags('tags-all'),
        acceptedOnly: byId('accepted').checked,
      },
    };
    const minVotes = whole('min-votes', 'Minimum votes');
    if (minVotes !== undefined) request.filters.minVotes = minVotes;
    const from = dateSeconds('from', 0);
    if (from !== undefined) request.filters.createdFrom = from;
    // "Until" includes its whole day.
    const to = dateSeconds('to', 1);
    if (to !== undefined) request.filters.createdTo = to;
    if (modelLoaded()) {
      request.rerank = byId('rerank').checked;
      request.fusion = byId('fusion').value;
      const weight = byId('fusion-weight').value.trim();
      if (weight && request.fusion === 'linear') request.fusionWeight = Number(weight);
    }
    return request;
  }

  async function search(event) {
    event.preventDefault();
    const query = [byId('title').value.trim(), byId('body').value.trim()].filter(Boolean).join(' ');
    if (!query) {
      say(byId('error'), 'Type a title or a question first.');
      return;
    }
    let request;
    let deadline;
    try {
      request = buildRequest(query);
      deadline = whole('deadline', 'Deadline');
    } catch (err) {
      say(byId('error'), err.message);
      return;
    }
    const headers = deadline ? { 'X-Timeout-Ms': String(deadline) } : {};
    const generation = ++state.generation;
    const button = byId('search');
    button.disabled = true;
    byId('hits').setAttribute('aria-busy', 'true');
    const result = await call('POST', '/v1/search', request, headers);
    if (generation !== state.generation) return;
    button.disabled = false;
    byId('hits').removeAttribute('aria-busy');
    // Which search the list shows the outcome of (scripts and tests wait on it).
    byId('hits').dataset.search = String(generation);
    if (result.status === 401) {
      keepToken(null);
      askToken('The server refused the token; enter it again.');
      return;
    }
    if (result.error) {
      say(byId('error'), 'Search failed: ' + result.error);
      byId('hits').replaceChildren();
      say(byId('summary'), '');
      return;
    }
    say(byId('error'), '');
    showResults(result.json, request, result.ms);
  }

  // ---- The answer.

  function showResults(response, request, roundTrip) {
    const hits = response.hits || [];
    const list = byId('hits');
    list.replaceChildren();
    state.full.clear();
    for (const hit of hits) list.appendChild(hitItem(hit));
    let summary = hits.length === 0 ? 'No answers matched.' : hits.length + (hits.length === 1 ? ' answer' : ' answers');
    if (response.reranked) summary += ', ' + response.reranked + ' reranked';
    say(byId('summary'), summary);
    say(byId('notice'), noticeOf(response, request));
    showTimings(response.timings || {}, roundTrip);
  }

  function noticeOf(response, request) {
    if (!modelLoaded()) return bm25Only();
    if (request.rerank === false) return 'Reranking is off: hits are in BM25 order.';
    if (!response.partial) return '';
    const why =
      response.partialReason === 'overload'
        ? 'the inference queue was full'
        : 'the deadline came before reranking finished';
    return (
      'Partial answer: ' + why + '. ' + (response.reranked || 0) + ' of the top ' + request.rerankDepth +
      ' BM25 candidates were scored; they come first, and the rest keep their BM25 order.'
    );
  }

  function threadUrl(answerId) {
    return state.siteUrl ? state.siteUrl + '/a/' + encodeURIComponent(String(answerId)) : null;
  }

  function hitItem(hit) {
    const item = make('li', 'hit');
    item.dataset.answerId = String(hit.answerId);

    const ranks = make('div', 'ranks');
    ranks.append(make('span', 'rank', '#' + hit.rank), make('span', 'bm25-rank', 'BM25 #' + hit.bm25Rank));
    if (typeof hit.relevance === 'number') {
      const relevance = make('span', 'relevance', 'relevance ' + hit.relevance.toFixed(3));
      if (typeof hit.relevantLogit === 'number') relevance.title = 'relevant logit ' + hit.relevantLogit.toFixed(3);
      ranks.append(relevance);
    } else {
      ranks.append(make('span', 'relevance none', 'not reranked'));
    }

    const heading = make('h2', 'title');
    const url = threadUrl(hit.answerId);
    const link = make(url ? 'a' : 'span');
    if (url) {
      link.href = url;
      link.rel = 'noopener noreferrer';
    }
    MathText.render(link, hit.title || '(untitled question)');
    heading.append(link);

    const meta = make('div', 'meta');
    const votes = make('span', 'votes', '▲ ' + hit.votes);
    votes.title = 'votes';
    meta.append(votes);
    if (hit.accepted) meta.append(make('span', 'accepted', '✓ accepted'));
    if (hit.created) meta.append(make('span', 'date', new Date(hit.created * 1000).toISOString().slice(0, 10)));
    const tagList = make('ul', 'tags');
    for (const tag of hit.tags || []) tagList.append(make('li', 'tag', tag));
    meta.append(tagList);

    const answer = make('div', 'answer');
    MathText.render(answer, hit.body || '', { snippet: true });
    const expand = make('button', 'expand', 'Show the whole answer');
    expand.type = 'button';
    expand.setAttribute('aria-expanded', 'false');
    expand.addEventListener('click', () => toggle(hit, answer, expand));
    item.append(ranks, heading, meta, answer, expand);
    return item;
  }

  async function toggle(hit, answer, button) {
    if (button.getAttribute('aria-expanded') === 'true') {
      answer.replaceChildren();
      answer.classList.remove('full');
      MathText.render(answer, hit.body || '', { snippet: true });
      button.textContent = 'Show the whole answer';
      button.setAttribute('aria-expanded', 'false');
      return;
    }
    let body = state.full.get(hit.answerId);
    if (body === undefined) {
      button.disabled = true;
      button.textContent = 'Loading…';
      const result = await call('GET', '/v1/answers/' + encodeURIComponent(String(hit.answerId)));
      button.disabled = false;
      if (result.error) {
        button.textContent = 'Show the whole answer';
        say(byId('error'), 'Could not load answer ' + hit.answerId + ': ' + result.error);
        return;
      }
      body = (result.json.answer && result.json.answer.body) || '';
      state.full.set(hit.answerId, body);
    }
    answer.replaceChildren();
    answer.classList.add('full');
    MathText.render(answer, body);
    button.textContent = 'Show less';
    button.setAttribute('aria-expanded', 'true');
  }

  function showTimings(timings, roundTrip) {
    const box = byId('timings');
    box.replaceChildren(make('strong', null, 'Stage timings (ms)'));
    const list = make('dl');
    const rows = [
      ['retrieve', timings.retrieveMs],
      ['tokenize', timings.tokenizeMs],
      ['queue', timings.queueMs],
      ['infer', timings.inferMs],
      ['rerank', timings.rerankMs],
      ['server total', timings.totalMs],
      ['round trip', roundTrip],
    ];
    for (const [label, value] of rows) {
      if (typeof value !== 'number') continue;
      list.append(make('dt', null, label), make('dd', null, value.toFixed(1)));
    }
    if (timings.cacheHits || timings.cacheMisses) {
      list.append(make('dt', null, 'score cache'), make('dd', null, timings.cacheHits + ' hit / ' + timings.cacheMisses + ' miss'));
    }
    box.append(list);
    box.hidden = false;
  }

  // ---- The preview of the question as typed.

  function schedulePreview() {
    clearTimeout(state.timer);
    state.timer = setTimeout(preview, 120);
  }

  function preview() {
    const box = byId('preview');
    box.replaceChildren();
    const title = byId('title').value;
    const body = byId('body').value;
    if (!title.trim() && !body.trim()) {
      box.hidden = true;
      return;
    }
    box.append(make('span', 'preview-label', 'Preview'));
    if (title.trim()) {
      const node = make('div', 'preview-title');
      MathText.render(node, title);
      box.append(node);
    }
    if (body.trim()) {
      const node = make('div', 'preview-body');
      MathText.render(node, body);
      box.append(node);
    }
    box.hidden = false;
  }

  // ---- Start.

  function wire() {
    byId('search-form').addEventListener('submit', search);
    byId('title').addEventListener('input', schedulePreview);
    byId('body').addEventListener('input', schedulePreview);
    byId('token-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const token = byId('token').value.trim();
      if (!/^[\x21-\x7e]+$/.test(token)) {
        say(byId('token-error'), 'A token is printable ASCII without spaces.');
        return;
      }
      byId('token').value = '';
      keepToken(token);
      loadInfo();
    });
    byId('forget-token').addEventListener('click', () => {
      keepToken(null);
      byId('hits').replaceChildren();
      askToken('');
    });
  }

  function siteUrlOf(text) {
    try {
      const url = new URL(text);
      if (url.protocol === 'https:' || url.protocol === 'http:') return text.replace(/\/+$/, '');
    } catch (_) {
      // not a URL: no links
    }
    return null;
  }

  async function start() {
    wire();
    const config = await call('GET', '/page/config');
    if (config.error || !config.json) {
      say(byId('error'), 'Cannot load the page configuration: ' + (config.error || 'not JSON'));
      return;
    }
    state.siteUrl = siteUrlOf(String(config.json.siteUrl || ''));
    state.auth = Boolean(config.json.auth);
    byId('site').textContent = state.siteUrl || 'its site';
    state.token = state.auth ? storedToken() : null;
    if (state.auth && !state.token) askToken('');
    else await loadInfo();
    document.body.dataset.ready = 'true';
  }

  start();
})();
