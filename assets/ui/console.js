// cronhook web console. Vanilla JS, no framework, no CDN: it fills the server-rendered
// page skeletons from the JSON API and refreshes them in place. Everything from the
// server is inserted as text nodes (never as HTML), so stored names cannot inject markup.
'use strict';

(function () {
  const REFRESH_MS = 2000;

  // ---- basics ---------------------------------------------------------------------

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : '';
  }

  /** Calls the API with the session cookie; state-changing calls carry the CSRF token. */
  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken();
    const options = { method, headers, credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    if (response.status === 401) {
      window.location.assign('/login');
      throw new Error('the session has ended; log in again');
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = { detail: text };
      }
    }
    if (!response.ok) {
      const error = new Error((data && (data.detail || data.title)) || response.statusText);
      error.status = response.status;
      error.problem = data;
      throw error;
    }
    return data;
  }

  /** Builds an element: attrs are properties/attributes, children are nodes or text. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    for (const child of children.flat()) {
      if (child) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));

  function pad(n) {
    return String(n).padStart(2, '0');
  }

  /** Local date and time, to the second. */
  function formatTime(iso) {
    if (!iso) return '–';
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function formatDuration(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return '–';
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    if (ms < 3600000) return `${Math.round(ms / 60000)} min`;
    return `${(ms / 3600000).toFixed(1)} h`;
  }

  function relative(iso) {
    if (!iso) return '–';
    const delta = new Date(iso).getTime() - Date.now();
    if (Math.abs(delta) < 1000) return 'now';
    return delta > 0 ? `in ${formatDuration(delta)}` : `${formatDuration(-delta)} ago`;
  }

  function timeNode(iso, mode) {
    if (!iso) return el('span', { class: 'muted', text: '–' });
    return el('time', {
      datetime: iso,
      title: formatTime(iso),
      text: mode === 'relative' ? relative(iso) : formatTime(iso),
    });
  }

  function formatBytes(n) {
    if (!n) return '0 B';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
  }

  function badge(state) {
    return el('span', { class: `badge state-${state}`, text: state });
  }

  function flash(message, isError) {
    const node = $('#flash');
    if (!node) return;
    node.textContent = message;
    node.classList.toggle('error', Boolean(isError));
    node.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(() => {
      node.hidden = true;
    }, 6000);
  }

  /** A confirmation step in a modal dialog; resolves true when the user confirms. */
  function confirmStep(text, confirmLabel) {
    const dialog = $('#confirm-dialog');
    if (!dialog || typeof dialog.showModal !== 'function') {
      return Promise.resolve(window.confirm(text));
    }
    $('#confirm-text', dialog).textContent = text;
    $('#confirm-ok', dialog).textContent = confirmLabel || 'Confirm';
    dialog.returnValue = '';
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
      dialog.showModal();
      $('#confirm-ok', dialog).focus();
    });
  }

  /** Runs `load` now and every REFRESH_MS while the page is visible; errors go to the flash line. */
  function live(load, every) {
    let running = false;
    const tick = async () => {
      if (running || document.hidden) return;
      running = true;
      try {
        await load();
      } catch (error) {
        flash(error.message, true);
      } finally {
        running = false;
      }
    };
    tick();
    setInterval(tick, every || REFRESH_MS);
    return tick;
  }

  /** Replaces a tbody's rows, keeping keyboard focus on the same control across refreshes. */
  function replaceRows(tbody, rows) {
    const active = document.activeElement;
    const focusKey = active && tbody.contains(active) ? active.dataset.key : null;
    tbody.replaceChildren(...rows);
    // Column names on each cell, for the stacked phone layout (console.css).
    const headings = Array.from(tbody.closest('table').querySelectorAll('thead th')).map((th) => th.textContent);
    for (const row of rows) {
      Array.from(row.children).forEach((cell, i) => {
        if (headings[i]) cell.dataset.label = headings[i];
      });
    }
    if (focusKey) {
      const again = tbody.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
      if (again) again.focus();
    }
  }

  // ---- jobs: shared pieces ----------------------------------------------------------

  function scheduleText(trigger) {
    switch (trigger.kind) {
      case 'cron':
        return `cron ${trigger.expression} (${trigger.time_zone || 'UTC'})${trigger.calendar ? `, calendar ${trigger.calendar}` : ''}`;
      case 'interval':
        return `every ${formatDuration(trigger.interval_ms)}`;
      case 'at':
        return `once at ${formatTime(trigger.at)}`;
      case 'immediate':
        return 'once, immediately';
      default:
        return trigger.kind;
    }
  }

  function targetText(job) {
    const t = job.target || {};
    if (t.url) return t.url;
    return `${t.app}${t.handler ? ` → ${t.handler}` : ''}`;
  }

  function isImmediateOnly(job) {
    return job.triggers.length > 0 && job.triggers.every((t) => t.kind === 'immediate');
  }

  /**
   * The lifecycle rules as the buttons show them. The server enforces them again
   * (src/lifecycle.rs); this only explains up front why a button cannot be used.
   */
  function jobActions(job) {
    const immediate = isImmediateOnly(job);
    const paused = job.state === 'paused' || job.state === 'pausing';
    const name = `${job.group}/${job.name}`;
    return [
      {
        action: 'pause',
        label: 'Pause',
        reason: immediate ? 'immediate jobs cannot be paused' : paused ? `already ${job.state}` : null,
        confirm: `Pause job ${name}? No new fires start; a running fire finishes.`,
        run: () => api('POST', `/api/v1/jobs/${job.id}/pause`),
        done: `Job ${name} paused.`,
      },
      {
        action: 'resume',
        label: 'Resume',
        reason: immediate ? 'immediate jobs cannot be resumed' : !paused ? 'already active' : null,
        confirm: `Resume job ${name}? Its next fire is computed from now.`,
        run: () => api('POST', `/api/v1/jobs/${job.id}/resume`),
        done: `Job ${name} resumed.`,
      },
      {
        action: 'run',
        label: 'Run now',
        reason: null,
        confirm: `Run job ${name} now, outside its schedule?`,
        run: () => api('POST', `/api/v1/jobs/${job.id}/run`),
        done: `Job ${name}: a fire was started.`,
      },
      {
        action: 'delete',
        label: 'Delete',
        danger: true,
        reason: job.running > 0 ? `${job.running} fire(s) running; wait for them or cancel them first` : null,
        confirm: `Delete job ${name}? This cannot be undone.`,
        run: () => api('DELETE', `/api/v1/jobs/${job.id}`),
        done: `Job ${name} deleted.`,
      },
    ];
  }

  function actionButtons(job, afterAction) {
    const reasons = [];
    const buttons = jobActions(job).map((a) => {
      if (a.reason) reasons.push(`${a.label}: ${a.reason}`);
      return el('button', {
        type: 'button',
        class: a.danger ? 'danger small' : 'small',
        disabled: Boolean(a.reason),
        title: a.reason || undefined,
        'aria-label': `${a.label} ${job.group}/${job.name}`,
        dataset: { action: a.action, key: `${job.id}:${a.action}` },
        text: a.label,
        onclick: async () => {
          if (!(await confirmStep(a.confirm, a.label))) return;
          try {
            await a.run();
            flash(a.done);
          } catch (error) {
            flash(`${a.label} failed: ${error.message}`, true);
          }
          await afterAction(a.action);
        },
      });
    });
    return el(
      'div',
      { class: 'row-actions' },
      buttons,
      el('a', { class: 'button small secondary', href: `/jobs/${job.id}/edit`, dataset: { key: `${job.id}:edit` }, text: 'Edit' }),
      reasons.length ? el('small', { class: 'reason', text: reasons.join(' · ') }) : null,
    );
  }

  // ---- jobs list ----------------------------------------------------------------------

  async function jobsPage() {
    const form = $('#job-filters');
    const tbody = $('#jobs-table tbody');
    const groupSelect = $('#job-group');
    let lastJson = '';

    async function loadGroups() {
      const all = await api('GET', '/api/v1/jobs?limit=500');
      const groups = [...new Set(all.items.map((j) => j.group))].sort();
      const current = groupSelect.value;
      groupSelect.replaceChildren(
        el('option', { value: '', text: 'All groups' }),
        ...groups.map((g) => el('option', { value: g, text: g })),
      );
      groupSelect.value = groups.includes(current) ? current : '';
    }

    async function load() {
      const params = new URLSearchParams({ limit: '200' });
      const q = $('#job-search').value.trim();
      if (q) params.set('q', q);
      if (groupSelect.value) params.set('group', groupSelect.value);
      if ($('#job-state').value) params.set('state', $('#job-state').value);
      const page = await api('GET', `/api/v1/jobs?${params}`);
      const json = JSON.stringify(page.items);
      if (json === lastJson) {
        // Only the relative times move.
        $$('time[data-relative]', tbody).forEach((t) => {
          t.textContent = relative(t.getAttribute('datetime'));
        });
        return;
      }
      lastJson = json;
      $('#jobs-empty').hidden = page.items.length > 0;
      replaceRows(
        tbody,
        page.items.map((job) => {
          const next = timeNode(job.next_fire_at, 'relative');
          next.dataset.relative = '1';
          return el(
            'tr',
            { dataset: { jobId: job.id, state: job.state } },
            el('td', {}, el('a', { href: `/jobs/${job.id}`, dataset: { key: `${job.id}:link` }, text: `${job.group}/${job.name}` }),
              job.description ? el('div', { class: 'muted', text: job.description }) : null),
            el('td', {}, badge(job.state)),
            el('td', { text: job.triggers.map(scheduleText).join('; ') || '–' }),
            el('td', { class: 'target', text: targetText(job) }),
            el('td', {}, next),
            el('td', { text: String(job.running) }),
            el('td', {}, actionButtons(job, () => { lastJson = ''; return Promise.all([load(), loadGroups()]); })),
          );
        }),
      );
    }

    let debounce;
    form.addEventListener('input', () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => { lastJson = ''; load().catch((e) => flash(e.message, true)); }, 200);
    });
    form.addEventListener('submit', (e) => e.preventDefault());
    await loadGroups().catch((e) => flash(e.message, true));
    live(load);
  }

  // ---- job form -----------------------------------------------------------------------

  function showFieldError(input, message) {
    const holder = input.closest('.field');
    const slot = holder && holder.querySelector('.field-error');
    input.setAttribute('aria-invalid', 'true');
    if (slot) {
      slot.textContent = message;
      slot.hidden = false;
      if (!slot.id) slot.id = `${input.id}-error`;
      input.setAttribute('aria-describedby', [input.getAttribute('aria-describedby'), slot.id].filter(Boolean).join(' '));
    }
  }

  function clearFieldErrors(form) {
    $$('.field-error', form).forEach((slot) => {
      slot.hidden = true;
      slot.textContent = '';
    });
    $$('[aria-invalid]', form).forEach((input) => input.removeAttribute('aria-invalid'));
    $('#form-error').hidden = true;
  }

  /** Puts an API problem next to the field its detail names (`triggers[0].expression: …`). */
  function showProblem(form, message) {
    const match = /^([A-Za-z_][\w.\[\]]*): /.exec(message);
    if (match) {
      const path = match[1];
      const fields = $$('[data-field]', form).filter((f) => !f.closest('[hidden]'));
      const exact = fields.find((f) => f.dataset.field === path);
      const prefix = fields
        .filter((f) => f.dataset.field.startsWith(`${path}.`) || path.startsWith(`${f.dataset.field}.`))
        .sort((a, b) => b.dataset.field.length - a.dataset.field.length)[0];
      const target = exact || prefix;
      if (target) {
        showFieldError(target, message.slice(match[0].length));
        target.focus();
        return;
      }
    }
    const box = $('#form-error');
    box.textContent = message;
    box.hidden = false;
  }

  function toLocalInput(iso) {
    const d = new Date(iso);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  async function jobFormPage() {
    const form = $('#job-form');
    const jobId = form.dataset.jobId;
    const kind = $('#f-kind');
    const targetKind = $('#f-target-kind');

    function syncVisibility() {
      $$('[data-kind]', form).forEach((n) => { n.hidden = n.dataset.kind !== kind.value; });
      $$('[data-target]', form).forEach((n) => { n.hidden = n.dataset.target !== targetKind.value; });
    }
    kind.addEventListener('change', syncVisibility);
    targetKind.addEventListener('change', syncVisibility);

    // Live cron preview: the server explains the expression and lists the next 5 instants.
    let previewSeq = 0;
    let previewTimer;
    async function preview() {
      const seq = ++previewSeq;
      const input = $('#f-cron');
      const slot = $('#cron-error');
      const expression = input.value.trim();
      const params = new URLSearchParams({ expression, time_zone: $('#f-tz').value.trim() || 'UTC', count: '5' });
      try {
        const result = await api('GET', `/api/v1/cron/preview?${params}`);
        if (seq !== previewSeq) return;
        slot.hidden = true;
        input.removeAttribute('aria-invalid');
        $('#cron-preview').hidden = false;
        $('#cron-explanation').textContent = result.explanation;
        $('#cron-next').replaceChildren(...result.next.map((t) => el('li', {}, timeNode(t), ` (${t})`)));
      } catch (error) {
        if (seq !== previewSeq) return;
        $('#cron-preview').hidden = true;
        $('#cron-explanation').textContent = '';
        $('#cron-next').replaceChildren();
        const message = error.message.replace(/^(expression|time_zone): /, '');
        if (/^time_zone: /.test(error.message)) {
          showFieldError($('#f-tz'), message);
        } else {
          showFieldError(input, message);
        }
      }
    }
    function schedulePreview() {
      clearTimeout(previewTimer);
      $('#f-tz').removeAttribute('aria-invalid');
      const tzSlot = $('#f-tz').closest('.field').querySelector('.field-error');
      tzSlot.hidden = true;
      previewTimer = setTimeout(preview, 250);
    }
    $('#f-cron').addEventListener('input', schedulePreview);
    $('#f-tz').addEventListener('input', schedulePreview);

    const calendars = await api('GET', '/api/v1/calendars').catch(() => ({ items: [] }));
    $('#f-calendar').append(...calendars.items.map((c) => el('option', { value: c.name, text: c.name })));

    // When editing, the job as loaded: settings the form does not show are kept from it.
    let loaded = null;
    if (jobId) {
      const job = await api('GET', `/api/v1/jobs/${jobId}`);
      loaded = job;
      $('#f-group').value = job.group;
      $('#f-name').value = job.name;
      $('#f-description').value = job.description || '';
      const trigger = job.triggers[0];
      if (job.triggers.length > 1) {
        showProblem(form, `This job has ${job.triggers.length} triggers; the form edits jobs with one trigger. Use the API (PUT /api/v1/jobs/${job.id}) to change it.`);
        $('#save-job').disabled = true;
      }
      if (trigger) {
        kind.value = trigger.kind;
        if (trigger.expression) $('#f-cron').value = trigger.expression;
        if (trigger.time_zone) $('#f-tz').value = trigger.time_zone;
        if (trigger.interval_ms) $('#f-interval').value = trigger.interval_ms;
        if (trigger.at) $('#f-at').value = toLocalInput(trigger.at);
        if (trigger.misfire) $('#f-misfire').value = trigger.misfire;
        if (trigger.calendar) $('#f-calendar').value = trigger.calendar;
      }
      if (job.target.url) {
        targetKind.value = 'url';
        $('#f-url').value = job.target.url;
      } else {
        targetKind.value = 'app';
        $('#f-app').value = job.target.app || '';
        $('#f-handler').value = job.target.handler || '';
        $('#f-instance').value = job.target.instance || '';
      }
      $('#f-routing').value = job.routing;
      $('#f-mode').value = job.mode;
      $('#f-payload').value = JSON.stringify(job.payload, null, 2);
      $('#f-concurrency').value = job.concurrency;
      $('#f-timeout').value = job.timeout_ms;
      $('#f-attempts').value = job.retry.max_attempts;
      $('#f-backoff').value = job.retry.backoff_ms;
      $('#save-job').textContent = 'Save changes';
    }
    syncVisibility();
    preview();

    function body() {
      const trigger = { kind: kind.value };
      if (kind.value === 'cron') {
        trigger.expression = $('#f-cron').value.trim();
        trigger.time_zone = $('#f-tz').value.trim() || 'UTC';
      } else if (kind.value === 'interval') {
        trigger.interval_ms = Number($('#f-interval').value);
      } else if (kind.value === 'at') {
        const local = $('#f-at').value;
        if (!local) throw Object.assign(new Error('triggers[0].at: pick a date and time'), {});
        trigger.at = new Date(local).toISOString();
      }
      if (kind.value !== 'immediate') trigger.misfire = $('#f-misfire').value;
      if ($('#f-calendar').value) trigger.calendar = $('#f-calendar').value;
      let payload;
      try {
        payload = JSON.parse($('#f-payload').value || 'null');
      } catch (error) {
        throw new Error(`payload: not valid JSON (${error.message})`);
      }
      const target = {};
      const job = {
        group: $('#f-group').value.trim(),
        name: $('#f-name').value.trim(),
        description: $('#f-description').value,
        target,
        mode: $('#f-mode').value,
        payload,
        concurrency: $('#f-concurrency').value,
        retry: {
          max_attempts: Number($('#f-attempts').value || 1),
          backoff_ms: Number($('#f-backoff').value || 0),
        },
        triggers: [trigger],
      };
      if (targetKind.value === 'url') {
        target.url = $('#f-url').value.trim();
      } else {
        target.app = $('#f-app').value.trim();
        if ($('#f-handler').value.trim()) target.handler = $('#f-handler').value.trim();
        if ($('#f-instance').value.trim()) target.instance = $('#f-instance').value.trim();
        job.routing = $('#f-routing').value;
      }
      if ($('#f-timeout').value) job.timeout_ms = Number($('#f-timeout').value);
      if (loaded) {
        job.retry = { ...loaded.retry, ...job.retry };
        job.on_success = loaded.on_success || [];
        job.on_failure = loaded.on_failure || [];
        if (loaded.alert_url) job.alert_url = loaded.alert_url;
        if (target.app && loaded.target.when_unavailable) target.when_unavailable = loaded.target.when_unavailable;
        const before = loaded.triggers[0];
        if (before && before.kind === trigger.kind) {
          for (const key of ['start_at', 'repeat_count', 'misfire_threshold_ms']) {
            if (before[key] !== undefined && before[key] !== null) trigger[key] = before[key];
          }
        }
      }
      return job;
    }

    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      let job;
      try {
        job = body();
      } catch (error) {
        showProblem(form, error.message);
        return;
      }
      const save = $('#save-job');
      save.disabled = true;
      try {
        const saved = jobId
          ? await api('PUT', `/api/v1/jobs/${jobId}`, job)
          : await api('POST', '/api/v1/jobs', job);
        window.location.assign(`/jobs/${saved.id}`);
      } catch (error) {
        showProblem(form, error.message);
        save.disabled = false;
      }
    });
  }

  // ---- job detail -------------------------------------------------------------------

  function timelineText(fire) {
    const base = new Date(fire.scheduled_at).getTime();
    const step = (iso) => (iso ? `+${formatDuration(new Date(iso).getTime() - base)}` : '…');
    return `${formatTime(fire.scheduled_at)} → ${step(fire.dispatched_at)} → ${step(fire.acked_at)} → ${step(fire.finished_at)}`;
  }

  function fact(dl, term, value) {
    dl.append(el('dt', { text: term }), el('dd', {}, value instanceof Node ? value : String(value ?? '–')));
  }

  async function jobDetailPage() {
    const root = $('#job-detail');
    const jobId = root.dataset.jobId;
    let lastJob = '';

    /** The execution plan (calendars applied) until the end of tomorrow in the job's zone. */
    async function loadPlan() {
      const plan = await api('GET', `/api/v1/jobs/${jobId}/plan?limit=100`);
      const until = plan.until ? ` until ${formatTime(plan.until)}` : ' until the end of tomorrow';
      $('#plan-note').textContent = plan.job_state && plan.job_state !== 'active'
        ? `The job is ${plan.job_state}: nothing is planned.`
        : `${plan.items.length}${plan.truncated ? '+' : ''} fire(s) planned${until}${plan.items.length > 20 ? '; the first 20:' : '.'}`;
      replaceRows($('#plan-table tbody'), plan.items.slice(0, 20).map((p) => el('tr', { dataset: { status: p.status } },
        el('td', {}, timeNode(p.at)),
        el('td', { text: p.status }),
        el('td', { text: p.executor || '–' }))));
    }

    async function load() {
      let job;
      try {
        job = await api('GET', `/api/v1/jobs/${jobId}`);
      } catch (error) {
        if (error.status === 404) {
          $('#job-title').textContent = 'This job no longer exists.';
          $('#job-actions').replaceChildren();
          return;
        }
        throw error;
      }
      const json = JSON.stringify(job);
      if (json !== lastJob) {
        lastJob = json;
        document.title = `${job.group}/${job.name} · cronhook`;
        $('#job-title').textContent = `${job.group}/${job.name}`;
        $('#job-state').replaceWith(Object.assign(badge(job.state), { id: 'job-state' }));
        $('#job-actions').replaceChildren(actionButtons(job, async (action) => {
          if (action === 'delete') window.location.assign('/jobs');
          else { lastJob = ''; await load(); }
        }));
        const facts = $('#job-facts');
        facts.replaceChildren();
        fact(facts, 'Description', job.description || '–');
        fact(facts, 'Target', targetText(job));
        fact(facts, 'Mode', job.mode);
        fact(facts, 'Routing', job.routing);
        fact(facts, 'Overlap', job.concurrency);
        fact(facts, 'Timeout', formatDuration(job.timeout_ms));
        fact(facts, 'Retries', `${job.retry.max_attempts} attempt(s), backoff ${formatDuration(job.retry.backoff_ms)} ×${job.retry.multiplier}`);
        fact(facts, 'Payload', el('code', { text: JSON.stringify(job.payload) }));
        fact(facts, 'Version', job.version);
        fact(facts, 'Next fire', timeNode(job.next_fire_at));
        replaceRows($('#triggers-table tbody'), job.triggers.map((t) => el('tr', {},
          el('td', { text: t.kind }),
          el('td', { text: scheduleText(t) }),
          el('td', { text: t.misfire || 'fire_now' }),
          el('td', {}, timeNode(t.next_fire_at)),
          el('td', { text: String(t.fire_count) }))));
        await loadPlan();
      }
      const fires = await api('GET', `/api/v1/fires?job_id=${jobId}&limit=25`);
      replaceRows($('#fires-table tbody'), fires.items.map((f) => el('tr', { dataset: { fireId: f.id, state: f.state } },
        el('td', {}, el('a', { href: `/executions/${f.id}`, dataset: { key: f.id }, text: formatTime(f.scheduled_at) })),
        el('td', {}, badge(f.state)),
        el('td', { text: String(f.attempt) }),
        el('td', { class: 'timeline-cell', text: timelineText(f) }),
        el('td', { text: f.executor || '–' }))));
    }
    live(load);
  }

  // ---- executions -------------------------------------------------------------------

  const OPEN_STATES = ['fired', 'running'];

  async function jobNames() {
    const jobs = await api('GET', '/api/v1/jobs?limit=500');
    return new Map(jobs.items.map((j) => [j.id, `${j.group}/${j.name}`]));
  }

  function fireDuration(f) {
    const start = f.acked_at || f.dispatched_at;
    if (!start || !f.finished_at) return null;
    return new Date(f.finished_at).getTime() - new Date(start).getTime();
  }

  async function executionsPage() {
    const form = $('#fire-filters');
    let names = await jobNames().catch(() => new Map());
    const jobSelect = $('#fire-job');
    const fromQuery = new URLSearchParams(window.location.search).get('job_id');
    jobSelect.append(...[...names].sort((a, b) => a[1].localeCompare(b[1])).map(([id, name]) => el('option', { value: id, text: name })));
    if (fromQuery) jobSelect.value = fromQuery;

    async function load() {
      const params = new URLSearchParams({ limit: '200' });
      if (jobSelect.value) params.set('job_id', jobSelect.value);
      if ($('#fire-state').value) params.set('state', $('#fire-state').value);
      if ($('#fire-from').value) params.set('from', new Date($('#fire-from').value).toISOString());
      if ($('#fire-until').value) params.set('until', new Date($('#fire-until').value).toISOString());
      const page = await api('GET', `/api/v1/fires?${params}`);
      const executor = $('#fire-executor').value.trim().toLowerCase();
      const items = page.items.filter((f) => !executor || (f.executor || '').toLowerCase().includes(executor));
      if (items.some((f) => !names.has(f.job_id))) names = await jobNames().catch(() => names);
      $('#fires-empty').hidden = items.length > 0;
      replaceRows($('#fires-table tbody'), items.map((f) => el('tr', { dataset: { fireId: f.id, state: f.state } },
        el('td', {}, el('a', { href: `/executions/${f.id}`, dataset: { key: f.id }, text: formatTime(f.scheduled_at) })),
        el('td', { text: names.get(f.job_id) || f.job_id }),
        el('td', {}, badge(f.state)),
        el('td', { text: String(f.attempt) }),
        el('td', { text: f.executor || '–' }),
        el('td', { text: f.http_status ?? '–' }),
        el('td', { text: formatDuration(fireDuration(f)) }))));
    }
    const refresh = live(load);
    form.addEventListener('input', refresh);
    form.addEventListener('change', refresh);
    form.addEventListener('submit', (e) => e.preventDefault());
  }

  async function executionDetailPage() {
    const root = $('#fire-detail');
    const fireId = root.dataset.fireId;
    const cancel = $('#fire-cancel');
    let current = null;

    const retry = $('#fire-retry');
    retry.addEventListener('click', async () => {
      if (!current) return;
      if (!(await confirmStep('Retry this fire? A new attempt for the same instant is recorded and dispatched.', 'Retry'))) return;
      try {
        const again = await api('POST', `/api/v1/fires/${fireId}/retry`);
        window.location.assign(`/executions/${again.id}`);
      } catch (error) {
        flash(`Retry failed: ${error.message}`, true);
      }
    });

    cancel.addEventListener('click', async () => {
      if (!current) return;
      if (!(await confirmStep('Cancel this fire? A running executor is told to stop it.', 'Cancel fire'))) return;
      try {
        await api('POST', `/api/v1/fires/${fireId}/cancel`);
        flash('Fire cancelled.');
      } catch (error) {
        flash(`Cancel failed: ${error.message}`, true);
      }
      await load();
    });

    async function load() {
      const f = await api('GET', `/api/v1/fires/${fireId}`);
      current = f;
      const job = await api('GET', `/api/v1/jobs/${f.job_id}`).catch(() => null);
      const jobName = job ? `${job.group}/${job.name}` : f.job_id;
      $('#fire-title').textContent = `${jobName} · ${formatTime(f.scheduled_at)}`;
      $('#fire-state').replaceWith(Object.assign(badge(f.state), { id: 'fire-state' }));
      const open = OPEN_STATES.includes(f.state);
      cancel.disabled = !open;
      cancel.title = open ? '' : `a ${f.state} fire cannot be cancelled (only fired or running ones)`;
      retry.disabled = open;
      retry.title = open ? `a ${f.state} fire is not finished; only a finished fire can be retried` : '';
      $('#cancel-reason').textContent = open ? `Retry: ${retry.title}` : `Cancel: ${cancel.title}`;
      const facts = $('#fire-facts');
      facts.replaceChildren();
      fact(facts, 'Job', job ? el('a', { href: `/jobs/${job.id}`, text: jobName }) : jobName);
      fact(facts, 'Attempt', f.attempt);
      fact(facts, 'HTTP status', f.http_status ?? '–');
      fact(facts, 'Executor', f.executor || '–');
      fact(facts, 'Node', f.node || '–');
      fact(facts, 'Deadline', timeNode(f.deadline_at));
      if (f.shard) fact(facts, 'Shard', `${f.shard.index + 1} of ${f.shard.total}`);
      $('#fire-timeline').replaceChildren(
        ...[['scheduled', f.scheduled_at], ['due', f.due_at], ['recorded (fired)', f.fired_at], ['dispatched', f.dispatched_at],
          ['acknowledged', f.acked_at], ['finished', f.finished_at]]
          .map(([label, iso]) => el('li', { class: iso ? 'done' : 'pending' }, el('span', { class: 'step', text: label }), ' ', timeNode(iso),
            iso && label !== 'scheduled' ? el('span', { class: 'muted', text: ` (+${formatDuration(new Date(iso).getTime() - new Date(f.scheduled_at).getTime())})` }) : null)),
      );
      // A fire stores a payload only when run-now overrode it; otherwise it carried the job's.
      $('#fire-payload').textContent = f.payload !== null && f.payload !== undefined
        ? JSON.stringify(f.payload, null, 2)
        : job
          ? `${JSON.stringify(job.payload, null, 2)}\n(the job's payload, version ${job.version}; this fire was version ${f.job_version})`
          : '(the job\'s payload)';
      $('#fire-output').textContent = (f.output ?? '(none)') + (f.output_truncated ? '\n… (truncated at 64 KiB)' : '');
      $('#fire-error').textContent = f.error ?? '(none)';
      const at = new Date(f.scheduled_at).getTime();
      const params = new URLSearchParams({ job_id: f.job_id, from: new Date(at).toISOString(), until: new Date(at + 1).toISOString(), limit: '100' });
      const attempts = await api('GET', `/api/v1/fires?${params}`);
      replaceRows($('#attempts-table tbody'), attempts.items.sort((a, b) => a.attempt - b.attempt).map((a) => el('tr', { class: a.id === f.id ? 'current' : '' },
        el('td', {}, el('a', { href: `/executions/${a.id}`, text: String(a.attempt) })),
        el('td', {}, badge(a.state)),
        el('td', { text: a.executor || '–' }),
        el('td', { text: a.http_status ?? '–' }),
        el('td', { text: a.error || '' }))));
    }
    live(load);
  }

  // ---- executors ----------------------------------------------------------------------

  /** A small line chart of samples (values scaled to 0..max), a dot on the latest. */
  function sparkline(samples, max, label) {
    const w = 240;
    const h = 40;
    const at = (v, i) => [(i / Math.max(1, samples.length - 1)) * w, h - (Math.min(v, max) / Math.max(max, 1)) * (h - 4) - 2];
    const points = samples.map((v, i) => at(v, i).join(',')).join(' ');
    const last = samples.length ? at(samples[samples.length - 1], samples.length - 1) : null;
    return svg('svg', { viewBox: `0 0 ${w} ${h}`, class: 'spark', role: 'img', 'aria-label': label },
      svg('title', {}, label),
      svg('polyline', { points, fill: 'none', stroke: 'currentColor', 'stroke-width': 1.5 }),
      last ? svg('circle', { cx: last[0], cy: last[1], r: 2.5, fill: 'currentColor' }) : null);
  }

  function gauge(label, percent, text) {
    const value = Math.max(0, Math.min(100, percent || 0));
    const fill = el('div', { class: `fill${value > 85 ? ' hot' : ''}` });
    fill.style.width = `${value}%`;
    return el('div', { class: 'gauge-row' },
      el('span', { class: 'gauge-label', text: label }),
      el('div', { class: 'gauge', role: 'meter', 'aria-label': label, 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': value.toFixed(1), 'aria-valuetext': text }, fill),
      el('span', { class: 'gauge-text', text }));
  }

  async function executorsPage() {
    async function load() {
      const [data, history] = await Promise.all([api('GET', '/api/v1/executors'), api('GET', '/ui/api/executor-load')]);
      const byApp = new Map();
      for (const x of data.items) {
        if (!byApp.has(x.app)) byApp.set(x.app, []);
        byApp.get(x.app).push(x);
      }
      $('#executors-empty').hidden = data.items.length > 0;
      $('#executor-apps').replaceChildren(...[...byApp].sort((a, b) => a[0].localeCompare(b[0])).map(([app, list]) => {
        const valid = list.filter((x) => x.valid).length;
        return el('section', { class: 'app', dataset: { app } },
          el('h2', { text: `${app} — ${valid} of ${list.length} valid` }),
          el('div', { class: 'instances' }, list.map((x) => {
            const samples = history[x.id] || [];
            const load = samples.map((p) => p.running + p.queued);
            const cpu = samples.map((p) => p.cpu_percent);
            const mem = samples.map((p) => (p.mem_total_bytes ? (p.mem_used_bytes / p.mem_total_bytes) * 100 : 0));
            const memPercent = x.mem_total_bytes ? (x.mem_used_bytes / x.mem_total_bytes) * 100 : 0;
            return el('article', { class: 'card instance', dataset: { instance: x.instance_id, valid: String(x.valid) } },
              el('h3', {}, x.instance_id, ' ', badge(x.valid ? 'valid' : 'invalid')),
              el('p', { class: 'muted', text: x.address }),
              gauge('CPU', x.cpu_percent, `${x.cpu_percent.toFixed(1)} %`),
              gauge('Memory', memPercent, `${formatBytes(x.mem_used_bytes)} of ${formatBytes(x.mem_total_bytes)}`),
              el('dl', { class: 'facts compact' },
                el('dt', { text: 'Task list' }), el('dd', { class: 'task-list', text: String(x.task_list) }),
                el('dt', { text: 'Running / queued / capacity' }), el('dd', { class: 'load', text: `${x.running} / ${x.queued} / ${x.capacity}` }),
                el('dt', { text: 'Load (1 min)' }), el('dd', { text: x.load1.toFixed(2) }),
                el('dt', { text: 'Last heartbeat' }), el('dd', {}, timeNode(x.last_heartbeat_at, 'relative')),
                el('dt', { text: 'Handlers' }), el('dd', { text: x.handlers.join(', ') || '–' }),
                el('dt', { text: 'SDK' }), el('dd', { text: x.sdk_version }),
                el('dt', { text: 'Dispatch failures' }), el('dd', { text: String(x.failures) })),
              el('div', { class: 'history', dataset: { samples: String(samples.length) } },
                el('span', { class: 'muted', text: 'running + queued' }), sparkline(load, Math.max(x.capacity, ...load), `running plus queued over the last hour, ${samples.length} samples`),
                el('span', { class: 'muted', text: 'CPU %' }), sparkline(cpu, 100, `CPU percent over the last hour, ${samples.length} samples`),
                el('span', { class: 'muted', text: 'memory %' }), sparkline(mem, 100, `memory percent over the last hour, ${samples.length} samples`)));
          })));
      }));
    }
    live(load);
  }

  // ---- dashboard --------------------------------------------------------------------

  const OUTCOME_ORDER = ['succeeded', 'failed', 'timed_out', 'lost', 'cancelled', 'misfired', 'skipped', 'running', 'fired'];

  function statList(dl, entries) {
    dl.replaceChildren(...entries.flatMap(([k, v]) => [el('dt', {}, badge(k)), el('dd', { text: String(v) })]));
  }

  /** Chart width in SVG units = the container's pixels, so text keeps its size. */
  function chartWidth(container) {
    return Math.max(320, Math.round(container.clientWidth || 600));
  }

  function barChart(buckets, w) {
    const h = 180;
    const left = 28;
    const totals = buckets.map((b) => Object.values(b.outcomes).reduce((a, c) => a + c, 0));
    const max = Math.max(1, ...totals);
    const bw = (w - left) / buckets.length;
    const bars = [];
    buckets.forEach((b, i) => {
      let y = h - left;
      for (const state of OUTCOME_ORDER) {
        const n = b.outcomes[state] || 0;
        if (!n) continue;
        const bh = (n / max) * (h - left - 10);
        y -= bh;
        bars.push(svg('rect', { x: left + i * bw + 2, y, width: Math.max(1, bw - 4), height: bh, class: `fill-${state}` },
          svg('title', {}, `${formatTime(b.start)}: ${n} ${state}`)));
      }
      if (i % 3 === 0) {
        const d = new Date(b.start);
        bars.push(svg('text', { x: left + i * bw + 2, y: h - 8, class: 'axis' }, `${pad(d.getHours())}:${pad(d.getMinutes())}`));
      }
    });
    return svg('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': `fires per 5 minutes, at most ${max}` },
      svg('text', { x: 0, y: 12, class: 'axis' }, String(max)),
      svg('line', { x1: left, y1: h - left, x2: w, y2: h - left, class: 'axis-line' }),
      bars);
  }

  function lagChart(buckets, w) {
    const h = 160;
    const left = 48;
    const values = buckets.flatMap((b) => [b.lag_p50_ms, b.lag_p99_ms]).filter((v) => v !== null && v !== undefined);
    const max = Math.max(1, ...values);
    const x = (i) => left + (i / Math.max(1, buckets.length - 1)) * (w - left - 4);
    // The top 24 units hold the legend.
    const y = (v) => h - 20 - (v / max) * (h - 46);
    // A line through the buckets that have fires, with a dot on each (one bucket is a dot).
    const line = (key, cls) => {
      const at = buckets.map((b, i) => [i, b[key]]).filter(([, v]) => v !== null && v !== undefined);
      if (!at.length) return null;
      return svg('g', { class: cls },
        svg('polyline', { points: at.map(([i, v]) => `${x(i)},${y(v)}`).join(' '), fill: 'none' }),
        at.map(([i, v]) => svg('circle', { cx: x(i), cy: y(v), r: 3.5 }, svg('title', {}, `${formatTime(buckets[i].start)}: ${key.includes('p99') ? 'p99' : 'p50'} ${formatDuration(v)}`))));
    };
    return svg('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': `firing lag p50 and p99 per 5 minutes, at most ${formatDuration(max)}` },
      svg('text', { x: 0, y: h - 20 - (h - 46) + 4, class: 'axis' }, formatDuration(max)),
      svg('text', { x: 0, y: h - 20, class: 'axis' }, '0'),
      svg('line', { x1: left, y1: h - 20, x2: w, y2: h - 20, class: 'axis-line' }),
      line('lag_p99_ms', 'line-p99'), line('lag_p50_ms', 'line-p50'),
      svg('text', { x: left + 60, y: 12, class: 'axis line-p50-text' }, '● p50'),
      svg('text', { x: left + 110, y: 12, class: 'axis line-p99-text' }, '● p99'));
  }

  async function dashboardPage() {
    async function load() {
      const d = await api('GET', '/ui/api/dashboard');
      statList($('#jobs-by-state'), Object.entries(d.jobs_by_state));
      if (!Object.keys(d.jobs_by_state).length) $('#jobs-by-state').replaceChildren(el('dd', { class: 'muted', text: 'no jobs yet' }));
      $('#success-rate').textContent = d.success_rate === null ? '–' : `${d.success_rate} %`;
      const total = Object.values(d.fires_by_state).reduce((a, c) => a + c, 0);
      $('#fire-totals').textContent = `${total} fire(s) in the last hour${d.sampled ? ' (charts: the most recent 20 000)' : ''}`;
      statList($('#executor-validity'), [['valid', d.executors_valid], ['invalid', d.executors_invalid]]);
      $('#nodes').replaceChildren(...d.nodes.map((n) => el('li', {}, badge(n.alive ? 'alive' : 'dead'), ` ${n.hostname} `, el('span', { class: 'muted', text: `(${n.id.slice(0, 8)}, heartbeat ${relative(n.last_heartbeat_at)})` }))));
      $('#chart-outcomes').replaceChildren(barChart(d.buckets, chartWidth($('#chart-outcomes'))));
      const present = OUTCOME_ORDER.filter((s) => d.fires_by_state[s]);
      $('#legend-outcomes').replaceChildren(...present.map((s) => el('li', {}, el('span', { class: `swatch fill-${s}` }), ` ${s}: ${d.fires_by_state[s]}`)));
      $('#lag-summary').textContent = d.lag_p50_ms === null ? 'no dispatched fires in the last hour' : `p50 ${formatDuration(d.lag_p50_ms)}, p99 ${formatDuration(d.lag_p99_ms)}`;
      $('#chart-lag').replaceChildren(lagChart(d.buckets, chartWidth($('#chart-lag'))));
      $('#failing-jobs tbody').replaceChildren(...(d.failing_jobs.length
        ? d.failing_jobs.map((j) => el('tr', {},
          el('td', {}, el('a', { href: `/jobs/${j.job_id}`, text: j.job })),
          el('td', { text: String(j.failures) }),
          el('td', { text: j.last_error || '' })))
        : [el('tr', {}, el('td', { colspan: 3, class: 'muted', text: 'none' }))]));
    }
    live(load, 3000);
  }

  // ---- start ------------------------------------------------------------------------

  const PAGES = {
    dashboard: dashboardPage,
    jobs: jobsPage,
    'job-form': jobFormPage,
    'job-detail': jobDetailPage,
    executions: executionsPage,
    'execution-detail': executionDetailPage,
    executors: executorsPage,
  };

  document.addEventListener('DOMContentLoaded', () => {
    const start = PAGES[document.body.dataset.page];
    if (start) start().catch((error) => flash(error.message, true));
  });
})();
