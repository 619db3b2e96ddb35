/*
 * The archiver's rows for apache_combined records, in native code (loaded with ctypes by
 * metricpipe_consumers/archive/native.py; the GIL is released while it runs).
 *
 * For each record it writes the raw and fields columns exactly as
 * archive/columnar.py's Python way writes them (which equals plan.build_row), or declines
 * the record (ok[i] = 0, nothing written) and the Python way makes that row. It takes only
 * the records where the answer cannot differ:
 *   - the value is a JSON object whose members are all strings, one of them "message",
 *     no key twice, no key named as a parsed field, ASCII only (a \u escape only below 0x80),
 *     nothing after the object but JSON whitespace; or a value that does not start with "{";
 *   - the line is printable ASCII (0x20-0x7e) without a backslash, plus trailing newlines.
 * On such a line every part of apache.APACHE_COMBINED is deterministic (no backslash, so
 * FIELD and PATH are runs up to a quote, and the only whitespace is the space), so the
 * greedy reading below is the expression's match. Every other record is declined: a
 * non-match, a backslash, a control character, non-ASCII text, other JSON shapes.
 * tests/unit/test_archive_native.py compares it with plan.build_row on the real log,
 * hostile records and generated mutations of them.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ABI 1
#define MAX_MEMBERS 16
#define MAX_KEY 64

int64_t metricpipe_rows_abi(void) { return ABI; }

typedef struct {
    uint8_t *out;
    int64_t used;
    int64_t cap;
    int full;
} sink_t;

static void put(sink_t *s, const uint8_t *bytes, int64_t n) {
    if (s->used + n > s->cap) { s->full = 1; return; }
    memcpy(s->out + s->used, bytes, (size_t)n);
    s->used += n;
}

static void puts_(sink_t *s, const char *text) { put(s, (const uint8_t *)text, (int64_t)strlen(text)); }

static void put_char(sink_t *s, uint8_t c) {
    if (s->used + 1 > s->cap) { s->full = 1; return; }
    s->out[s->used++] = c;
}

/* json.encoder.encode_basestring: quotes, \\ and \", control characters escaped */
static void put_json_string(sink_t *s, const uint8_t *text, int64_t n) {
    static const char hex[] = "0123456789abcdef";
    int64_t run = 0;
    put_char(s, '"');
    for (int64_t i = 0; i < n; i++) {
        uint8_t c = text[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        put(s, text + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': puts_(s, "\\\""); break;
        case '\\': puts_(s, "\\\\"); break;
        case '\n': puts_(s, "\\n"); break;
        case '\r': puts_(s, "\\r"); break;
        case '\t': puts_(s, "\\t"); break;
        case '\b': puts_(s, "\\b"); break;
        case '\f': puts_(s, "\\f"); break;
        default: {
            uint8_t esc[6] = {'\\', 'u', '0', '0', (uint8_t)hex[c >> 4], (uint8_t)hex[c & 15]};
            put(s, esc, 6);
        }
        }
    }
    put(s, text + run, n - run);
    put_char(s, '"');
}

/* int(digits) as Python prints it: no leading zeros */
static void put_int(sink_t *s, const uint8_t *digits, int64_t n) {
    int64_t i = 0;
    while (i < n - 1 && digits[i] == '0') i++;
    put(s, digits + i, n - i);
}

static int is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

static int hex_value(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One JSON string at v[*p] (the opening quote), decoded into out (capacity cap, ASCII only).
 * Returns the decoded length, or -1 to decline. */
static int64_t read_string(const uint8_t *v, int64_t n, int64_t *p, uint8_t *out, int64_t cap) {
    int64_t i = *p, len = 0;
    if (i >= n || v[i] != '"') return -1;
    i++;
    while (i < n) {
        uint8_t c = v[i];
        if (c == '"') { *p = i + 1; return len; }
        if (c < 0x20 || c >= 0x80) return -1;
        if (c != '\\') { /* a run of plain characters, copied at once */
            int64_t j = i + 1;
            while (j < n && v[j] != '"' && v[j] != '\\' && v[j] >= 0x20 && v[j] < 0x80) j++;
            if (len + (j - i) > cap) return -1;
            memcpy(out + len, v + i, (size_t)(j - i));
            len += j - i;
            i = j;
            continue;
        }
        {
            if (i + 1 >= n) return -1;
            uint8_t e = v[i + 1];
            i += 2;
            switch (e) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case '/': c = '/'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': {
                if (i + 4 > n) return -1;
                int code = 0;
                for (int k = 0; k < 4; k++) {
                    int h = hex_value(v[i + k]);
                    if (h < 0) return -1;
                    code = code * 16 + h;
                }
                if (code >= 0x80) return -1;
                c = (uint8_t)code;
                i += 4;
                break;
            }
            default: return -1;
            }
        }
        if (len >= cap) return -1;
        out[len++] = c;
    }
    return -1;
}

static const char *const PARSED[] = {"host", "ident", "user", "time", "method", "path",
                                     "protocol", "status", "bytes", "referrer", "agent"};

static int is_parsed_field(const uint8_t *key, int64_t n) {
    for (size_t k = 0; k < sizeof PARSED / sizeof PARSED[0]; k++)
        if ((int64_t)strlen(PARSED[k]) == n && memcmp(PARSED[k], key, (size_t)n) == 0) return 1;
    return 0;
}

typedef struct { int64_t key, key_len, value, value_len; } member_t;

/* The wrapper: members decoded into scratch; *line is the "message" member. 0 or -1. */
static int read_wrapper(const uint8_t *v, int64_t n, uint8_t *scratch, int64_t cap,
                        member_t *members, int *count, int *message) {
    int64_t p = 0, used = 0;
    *count = 0;
    *message = -1;
    while (p < n && is_ws(v[p])) p++;
    if (p >= n || v[p] != '{') return -1;
    p++;
    for (;;) {
        while (p < n && is_ws(v[p])) p++;
        if (*count == MAX_MEMBERS) return -1;
        member_t *m = &members[*count];
        m->key = used;
        m->key_len = read_string(v, n, &p, scratch + used, cap - used < MAX_KEY ? cap - used : MAX_KEY);
        if (m->key_len < 0) return -1;
        used += m->key_len;
        while (p < n && is_ws(v[p])) p++;
        if (p >= n || v[p] != ':') return -1;
        p++;
        while (p < n && is_ws(v[p])) p++;
        m->value = used;
        m->value_len = read_string(v, n, &p, scratch + used, cap - used);
        if (m->value_len < 0) return -1;
        used += m->value_len;
        for (int k = 0; k < *count; k++)
            if (members[k].key_len == m->key_len &&
                memcmp(scratch + members[k].key, scratch + m->key, (size_t)m->key_len) == 0)
                return -1; /* a key twice: decode_json_object refuses the record */
        if (m->key_len == 7 && memcmp(scratch + m->key, "message", 7) == 0) *message = *count;
        else if (is_parsed_field(scratch + m->key, m->key_len)) return -1;
        (*count)++;
        while (p < n && is_ws(v[p])) p++;
        if (p < n && v[p] == ',') { p++; continue; }
        if (p < n && v[p] == '}') { p++; break; }
        return -1;
    }
    while (p < n && is_ws(v[p])) p++;
    return (p == n && *message >= 0) ? 0 : -1;
}

typedef struct { const uint8_t *at; int64_t n; } span_t;

typedef struct {
    span_t host, ident, user, time, method, path, protocol, status, bytes, referrer, agent;
    int has_protocol, has_referrer, has_agent;
} apache_t;

/* " HTTP/[0-9.]+\"" at s[k] (k after the space) */
static int http_ahead(const uint8_t *s, int64_t n, int64_t k) {
    if (k + 5 > n || memcmp(s + k, "HTTP/", 5) != 0) return 0;
    int64_t j = k + 5;
    while (j < n && (is_digit(s[j]) || s[j] == '.')) j++;
    return j > k + 5 && j < n && s[j] == '"';
}

static int64_t run_until(const uint8_t *s, int64_t n, int64_t p, uint8_t stop) {
    while (p < n && s[p] != stop) p++;
    return p;
}

static int is_upper(uint8_t c) { return c >= 'A' && c <= 'Z'; }

/* `[class]++|-` at s[p]: the end of the run (or of the dash), or -1 */
static int64_t run_or_dash(const uint8_t *s, int64_t n, int64_t p, int (*in_class)(uint8_t)) {
    if (p < n && in_class(s[p])) {
        while (p < n && in_class(s[p])) p++;
        return p;
    }
    return (p < n && s[p] == '-') ? p + 1 : -1;
}

static int parse_apache(const uint8_t *s, int64_t n, apache_t *a) {
    int64_t p = 0, q;
    span_t *words[3] = {&a->host, &a->ident, &a->user};
    for (int w = 0; w < 3; w++) {
        q = run_until(s, n, p, ' ');
        if (q == p || q >= n) return -1;
        *words[w] = (span_t){s + p, q - p};
        p = q + 1;
    }
    if (p >= n || s[p] != '[') return -1;
    p++;
    q = run_until(s, n, p, ']');
    if (q == p || q >= n) return -1;
    a->time = (span_t){s + p, q - p};
    p = q + 1;
    if (p + 2 > n || s[p] != ' ' || s[p + 1] != '"') return -1;
    p += 2;
    q = run_or_dash(s, n, p, is_upper);
    if (q < 0) return -1;
    a->method = (span_t){s + p, q - p};
    p = q;
    if (p < n && s[p] == ' ') p++;
    q = p;
    while (q < n && s[q] != '"') {
        if (s[q] == ' ' && http_ahead(s, n, q + 1)) break;
        q++;
    }
    a->path = (span_t){s + p, q - p};
    p = q;
    a->has_protocol = 0;
    if (p < n && s[p] == ' ') {
        q = p + 6;
        while (q < n && (is_digit(s[q]) || s[q] == '.')) q++;
        a->protocol = (span_t){s + p + 1, q - p - 1};
        a->has_protocol = 1;
        p = q;
    }
    if (p + 2 > n || s[p] != '"' || s[p + 1] != ' ') return -1;
    p += 2;
    if (p + 4 > n || !is_digit(s[p]) || !is_digit(s[p + 1]) || !is_digit(s[p + 2]) || s[p + 3] != ' ')
        return -1;
    a->status = (span_t){s + p, 3};
    p += 4;
    q = run_or_dash(s, n, p, is_digit);
    if (q < 0) return -1;
    a->bytes = (span_t){s + p, q - p};
    p = q;
    a->has_referrer = a->has_agent = 0;
    if (p + 2 <= n && s[p] == ' ' && s[p + 1] == '"') {
        p += 2;
        q = run_until(s, n, p, '"');
        a->referrer = (span_t){s + p, q - p};
        p = q;
        if (p < n) {
            a->has_referrer = 1;
            p++;
            if (p + 2 <= n && s[p] == ' ' && s[p + 1] == '"') {
                p += 2;
                q = run_until(s, n, p, '"');
                a->agent = (span_t){s + p, q - p};
                p = q;
                if (p < n) { a->has_agent = 1; p++; }
            }
        }
    }
    while (p < n && s[p] == ' ') p++;
    return p == n ? 0 : -1;
}

static void put_field(sink_t *s, const char *name, span_t value) {
    puts_(s, name);
    put_json_string(s, value.at, value.n);
}

static void render_fields(sink_t *s, const uint8_t *scratch, const member_t *members, int count,
                          int message, const apache_t *a) {
    puts_(s, "{");
    for (int k = 0; k < count; k++) {
        if (k == message) continue;
        put_json_string(s, scratch + members[k].key, members[k].key_len);
        puts_(s, ": ");
        put_json_string(s, scratch + members[k].value, members[k].value_len);
        puts_(s, ", ");
    }
    put_field(s, "\"host\": ", a->host);
    put_field(s, ", \"ident\": ", a->ident);
    put_field(s, ", \"user\": ", a->user);
    put_field(s, ", \"time\": ", a->time);
    put_field(s, ", \"method\": ", a->method);
    put_field(s, ", \"path\": ", a->path);
    if (a->has_protocol) put_field(s, ", \"protocol\": ", a->protocol);
    puts_(s, ", \"status\": ");
    put_int(s, a->status.at, 3);
    puts_(s, ", \"bytes\": ");
    if (a->bytes.n == 1 && a->bytes.at[0] == '-') puts_(s, "0");
    else put_int(s, a->bytes.at, a->bytes.n);
    if (a->has_referrer) put_field(s, ", \"referrer\": ", a->referrer);
    if (a->has_agent) put_field(s, ", \"agent\": ", a->agent);
    puts_(s, "}");
}

/* Printable ASCII without a backslash, then only newlines: the length before them, or -1. */
static int64_t simple_line(const uint8_t *s, int64_t n) {
    int64_t end = n;
    while (end > 0 && s[end - 1] == '\n') end--;
    for (int64_t i = 0; i < end; i++)
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '\\') return -1;
    return end;
}

/*
 * values: an Arrow binary array's data and its n + 1 int32 offsets. raw, fields: out buffers
 * (capacities raw_cap, fields_cap) and their n + 1 int32 offsets; scratch: a work buffer of
 * at least the longest value's length. ok[i]: 1 written, 0 declined. Returns the number
 * written, or -1 when an out buffer was too small (nothing usable).
 */
int64_t metricpipe_archive_rows(const uint8_t *data, const int32_t *offsets, int64_t n,
                                uint8_t *raw, int64_t raw_cap, int32_t *raw_offsets,
                                uint8_t *fields, int64_t fields_cap, int32_t *fields_offsets,
                                uint8_t *scratch, int64_t scratch_cap, uint8_t *ok) {
    sink_t raws = {raw, 0, raw_cap, 0}, rendered = {fields, 0, fields_cap, 0};
    member_t members[MAX_MEMBERS];
    int64_t written = 0;
    raw_offsets[0] = fields_offsets[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *v = data + offsets[i];
        int64_t len = offsets[i + 1] - offsets[i];
        const uint8_t *line = v;
        int64_t line_len = len;
        int count = 0, message = -1;
        ok[i] = 0;
        if (len > 0 && v[0] == '{') {
            if (read_wrapper(v, len, scratch, scratch_cap, members, &count, &message) != 0) goto next;
            line = scratch + members[message].value;
            line_len = members[message].value_len;
        }
        int64_t matched = simple_line(line, line_len);
        apache_t a;
        if (matched < 0 || parse_apache(line, matched, &a) != 0) goto next;
        put(&raws, line, line_len);
        render_fields(&rendered, scratch, members, count, message, &a);
        if (raws.full || rendered.full) return -1;
        ok[i] = 1;
        written++;
    next:
        raw_offsets[i + 1] = (int32_t)raws.used;
        fields_offsets[i + 1] = (int32_t)rendered.used;
    }
    return written;
}
