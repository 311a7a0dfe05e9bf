/* chat.c - chat template detection and built-in formatters.
 *
 * Detection is an ordered list of substring tests over the Jinja source; the
 * first test that holds names the family. The order is llama.cpp's, which
 * matters because markers overlap (a phi4 template also contains chatml's
 * "<|im_start|>", a zephyr one phi3's "<|assistant|>"), so families qforge
 * does not format still have their tests in the chain and map to UNKNOWN
 * instead of letting a later, wrong family claim the template.
 *
 * Formatting appends to a growable buffer (struct buf) that remembers an
 * allocation failure and reports it once at the end, so each family's code
 * is a straight sequence of appends. Every family validates all roles before
 * writing anything, so an error never leaves a half-built prompt behind.
 */
#include "tok/chat.h"

#include <ctype.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"

/* ---- names ---- */

static const char *const g_names[QF_CHAT_COUNT] = {
    [QF_CHAT_UNKNOWN] = "unknown",
    [QF_CHAT_CHATML] = "chatml",
    [QF_CHAT_LLAMA2] = "llama2",
    [QF_CHAT_LLAMA2_SYS] = "llama2-sys",
    [QF_CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [QF_CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [QF_CHAT_MISTRAL_V1] = "mistral-v1",
    [QF_CHAT_MISTRAL_V3] = "mistral-v3",
    [QF_CHAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [QF_CHAT_MISTRAL_V7] = "mistral-v7",
    [QF_CHAT_MISTRAL_V7_TEKKEN] = "mistral-v7-tekken",
    [QF_CHAT_LLAMA3] = "llama3",
    [QF_CHAT_LLAMA4] = "llama4",
    [QF_CHAT_GEMMA] = "gemma",
    [QF_CHAT_PHI3] = "phi3",
    [QF_CHAT_PHI4] = "phi4",
    [QF_CHAT_FALCON3] = "falcon3",
    [QF_CHAT_ZEPHYR] = "zephyr",
    [QF_CHAT_MONARCH] = "monarch",
    [QF_CHAT_ORION] = "orion",
    [QF_CHAT_OPENCHAT] = "openchat",
    [QF_CHAT_VICUNA] = "vicuna",
    [QF_CHAT_VICUNA_ORCA] = "vicuna-orca",
    [QF_CHAT_DEEPSEEK] = "deepseek",
    [QF_CHAT_DEEPSEEK2] = "deepseek2",
    [QF_CHAT_DEEPSEEK3] = "deepseek3",
    [QF_CHAT_COMMAND_R] = "command-r",
    [QF_CHAT_CHATGLM3] = "chatglm3",
    [QF_CHAT_CHATGLM4] = "chatglm4",
    [QF_CHAT_GLMEDGE] = "glmedge",
    [QF_CHAT_MINICPM] = "minicpm",
    [QF_CHAT_EXAONE3] = "exaone3",
    [QF_CHAT_EXAONE4] = "exaone4",
    [QF_CHAT_MEGREZ] = "megrez",
    [QF_CHAT_BAILING] = "bailing",
    [QF_CHAT_SMOLVLM] = "smolvlm",
};

/* Kept in sync with g_names by the unit test (every listed name must
 * round-trip through qf_chat_from_name, and the count must match). */
static const char g_names_list[] =
    "chatml, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip, mistral-v1, mistral-v3, "
    "mistral-v3-tekken, mistral-v7, mistral-v7-tekken, llama3, llama4, gemma, phi3, phi4, "
    "falcon3, zephyr, monarch, orion, openchat, vicuna, vicuna-orca, deepseek, deepseek2, "
    "deepseek3, command-r, chatglm3, chatglm4, glmedge, minicpm, exaone3, exaone4, megrez, "
    "bailing, smolvlm";

const char *qf_chat_name(qf_chat_tmpl t) {
    if ((int)t <= 0 || t >= QF_CHAT_COUNT) return g_names[QF_CHAT_UNKNOWN];
    return g_names[t];
}

const char *qf_chat_names(void) { return g_names_list; }

qf_chat_tmpl qf_chat_from_name(const char *name) {
    if (!name) return QF_CHAT_UNKNOWN;
    for (int t = 1; t < QF_CHAT_COUNT; t++) {
        if (strcmp(name, g_names[t]) == 0) return (qf_chat_tmpl)t;
    }
    return QF_CHAT_UNKNOWN;
}

/* ---- detection ---- */

static bool has(const char *s, const char *needle) { return strstr(s, needle) != NULL; }

qf_chat_tmpl qf_chat_detect(const char *j) {
    if (!j || !*j) return QF_CHAT_UNKNOWN;
    qf_chat_tmpl named = qf_chat_from_name(j);
    if (named != QF_CHAT_UNKNOWN) return named;

    if (has(j, "<|im_start|>")) {
        if (has(j, "<|im_sep|>")) return QF_CHAT_PHI4;
        /* SmolVLM opens with <|im_start|> but is not chatml */
        if (has(j, "<end_of_utterance>")) return QF_CHAT_SMOLVLM;
        return QF_CHAT_CHATML;
    }
    if (strncmp(j, "mistral", 7) == 0 || has(j, "[INST]")) {
        if (has(j, "[SYSTEM_PROMPT]")) return QF_CHAT_MISTRAL_V7;
        /* Mistral's official v1 / v3 / v3-tekken templates */
        if (has(j, "' [INST] ' + system_message") || has(j, "[AVAILABLE_TOOLS]")) {
            if (has(j, " [INST]")) return QF_CHAT_MISTRAL_V1;
            if (has(j, "\"[INST]\"")) return QF_CHAT_MISTRAL_V3_TEKKEN;
            return QF_CHAT_MISTRAL_V3;
        }
        if (has(j, "content.strip()")) return QF_CHAT_LLAMA2_SYS_STRIP;
        if (has(j, "bos_token + '[INST]")) return QF_CHAT_LLAMA2_SYS_BOS;
        if (has(j, "<<SYS>>")) return QF_CHAT_LLAMA2_SYS;
        return QF_CHAT_LLAMA2;
    }
    if (has(j, "<|assistant|>") && has(j, "<|end|>")) return QF_CHAT_PHI3;
    if (has(j, "[gMASK]<sop>")) return QF_CHAT_CHATGLM4;
    if (has(j, "<|assistant|>") && has(j, "<|user|>")) {
        return has(j, "</s>") ? QF_CHAT_FALCON3 : QF_CHAT_GLMEDGE;
    }
    if (has(j, "<|{{ item['role'] }}|>") && has(j, "<|begin_of_image|>")) return QF_CHAT_GLMEDGE;
    if (has(j, "<|user|>") && has(j, "<|endoftext|>")) return QF_CHAT_ZEPHYR;
    if (has(j, "bos_token + message['role']")) return QF_CHAT_MONARCH;
    if (has(j, "<start_of_turn>")) return QF_CHAT_GEMMA;
    if (has(j, "'\\n\\nAssistant: ' + eos_token")) return QF_CHAT_ORION;
    if (has(j, "GPT4 Correct ")) return QF_CHAT_OPENCHAT;
    if (has(j, "USER: ") && has(j, "ASSISTANT: ")) {
        return has(j, "SYSTEM: ") ? QF_CHAT_VICUNA_ORCA : QF_CHAT_VICUNA;
    }
    if (has(j, "### Instruction:") && has(j, "<|EOT|>")) return QF_CHAT_DEEPSEEK;
    if (has(j, "<|START_OF_TURN_TOKEN|>") && has(j, "<|USER_TOKEN|>")) return QF_CHAT_COMMAND_R;
    if (has(j, "<|start_header_id|>") && has(j, "<|end_header_id|>")) return QF_CHAT_LLAMA3;
    if (has(j, "[gMASK]sop")) return QF_CHAT_CHATGLM3;
    if (has(j, "<\xe7\x94\xa8\xe6\x88\xb7>")) return QF_CHAT_MINICPM; /* "<用户>" */
    if (has(j, "'Assistant: ' + message['content'] + eos_token")) return QF_CHAT_DEEPSEEK2;
    if (has(j, "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>") && has(j, "<\xef\xbd\x9cUser\xef\xbd\x9c>") &&
        has(j, "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>")) {
        return QF_CHAT_DEEPSEEK3;
    }
    if (has(j, "[|system|]") && has(j, "[|assistant|]") && has(j, "[|endofturn|]")) {
        return has(j, "[|tool|]") ? QF_CHAT_EXAONE4 : QF_CHAT_EXAONE3;
    }
    /* Families below without a formatter here keep their place in the chain
     * so that a later test cannot misfile them. */
    if (has(j, "rwkv-world") || has(j, "{{- 'User: ' + message['content']|trim + '\\n\\n' -}}")) {
        return QF_CHAT_UNKNOWN; /* rwkv-world */
    }
    if (has(j, "<|start_of_role|>")) return QF_CHAT_UNKNOWN; /* granite */
    if (has(j, "message['role'] + additional_special_tokens[0] + message['content'] + "
               "additional_special_tokens[1]")) {
        return QF_CHAT_UNKNOWN; /* gigachat */
    }
    if (has(j, "<|role_start|>")) return QF_CHAT_MEGREZ;
    if (has(j, " \xd0\x90\xd1\x81\xd1\x81\xd0\xb8\xd1\x81\xd1\x82\xd0\xb5\xd0\xbd\xd1\x82:")) {
        return QF_CHAT_UNKNOWN; /* yandex (" Ассистент:") */
    }
    if (has(j, "<role>ASSISTANT</role>") && has(j, "'HUMAN'")) return QF_CHAT_BAILING;
    if (has(j, "<|header_start|>") && has(j, "<|header_end|>")) return QF_CHAT_LLAMA4;
    return QF_CHAT_UNKNOWN;
}

qf_chat_tmpl qf_chat_resolve(const char *jinja, const char *override_name, qf_err *err) {
    if (override_name) {
        qf_chat_tmpl t = qf_chat_from_name(override_name);
        if (t == QF_CHAT_UNKNOWN) {
            QF_ERR_SET(err, QF_ERR_INVALID, "chat template '%s' unknown; known: %s", override_name,
                       g_names_list);
        }
        return t;
    }
    qf_chat_tmpl t = qf_chat_detect(jinja);
    if (t == QF_CHAT_UNKNOWN) {
        qf_warn("chat template %s; falling back to chatml (override with --chat-template NAME, "
                "e.g. llama3, gemma, mistral-v7, phi3; all names: %s)",
                jinja && *jinja ? "not recognised" : "missing in the model", g_names_list);
        t = QF_CHAT_CHATML;
    }
    return t;
}

/* ---- output buffer ---- */

typedef struct buf {
    char *p;
    size_t len, cap;
    bool oom;
} buf;

static void putn(buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = qf_realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void puts_(buf *b, const char *s) { putn(b, s, strlen(s)); }

/* Append s without leading/trailing whitespace (isspace in the C locale:
 * space, \t, \n, \v, \f, \r - the same set llama.cpp's trim uses). */
static void puts_trim(buf *b, const char *s) {
    size_t a = 0, e = strlen(s);
    while (a < e && isspace((unsigned char)s[a])) a++;
    while (e > a && isspace((unsigned char)s[e - 1])) e--;
    putn(b, s + a, e - a);
}

/* ---- roles ---- */

enum { R_SYSTEM, R_USER, R_ASSISTANT, R_TOOL, R_OTHER };

static int role_kind(const char *r) {
    if (strcmp(r, "system") == 0) return R_SYSTEM;
    if (strcmp(r, "user") == 0) return R_USER;
    if (strcmp(r, "assistant") == 0) return R_ASSISTANT;
    if (strcmp(r, "tool") == 0) return R_TOOL;
    return R_OTHER;
}

/* Whether family t writes the role name itself and so can express any role. */
static bool free_roles(qf_chat_tmpl t) {
    switch (t) {
    case QF_CHAT_CHATML:
    case QF_CHAT_LLAMA3:
    case QF_CHAT_LLAMA4:
    case QF_CHAT_GEMMA:
    case QF_CHAT_PHI3:
    case QF_CHAT_PHI4:
    case QF_CHAT_FALCON3:
    case QF_CHAT_ZEPHYR:
    case QF_CHAT_MONARCH:
    case QF_CHAT_OPENCHAT:
    case QF_CHAT_CHATGLM3:
    case QF_CHAT_CHATGLM4:
    case QF_CHAT_GLMEDGE:
    case QF_CHAT_MEGREZ:
    case QF_CHAT_BAILING:
        return true;
    default:
        return false;
    }
}

static qf_status check_msgs(qf_chat_tmpl t, const qf_chat_msg *msgs, size_t n, qf_err *err) {
    if ((int)t <= 0 || t >= QF_CHAT_COUNT) {
        return QF_ERR_SET(err, QF_ERR_INVALID, "chat template %d unknown", (int)t);
    }
    if (!msgs || n == 0) {
        return QF_ERR_SET(err, QF_ERR_INVALID, "chat format (%s): no messages", g_names[t]);
    }
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || !*r) {
            return QF_ERR_SET(err, QF_ERR_INVALID, "chat format (%s): message %zu: %s role",
                              g_names[t], i, r ? "empty" : "NULL");
        }
        if (!msgs[i].content) {
            return QF_ERR_SET(err, QF_ERR_INVALID, "chat format (%s): message %zu (%s): NULL content",
                              g_names[t], i, r);
        }
        int k = role_kind(r);
        bool ok = free_roles(t) || k == R_SYSTEM || k == R_USER || k == R_ASSISTANT ||
                  (k == R_TOOL && t == QF_CHAT_EXAONE4);
        if (!ok) {
            return QF_ERR_SET(err, QF_ERR_INVALID,
                              "chat format (%s): message %zu: role '%s' cannot be expressed "
                              "(only system, user, assistant%s)",
                              g_names[t], i, r, t == QF_CHAT_EXAONE4 ? ", tool" : "");
        }
    }
    return QF_OK;
}

/* ---- formatters, one per family group ---- */

/* "<|im_start|>R\nC<|im_end|>\n" and friends: open + R + mid + C + close. */
static void fmt_role_wrap(buf *b, const qf_chat_msg *m, size_t n, const char *open, const char *mid,
                          const char *close, bool trim) {
    for (size_t i = 0; i < n; i++) {
        puts_(b, open);
        puts_(b, m[i].role);
        puts_(b, mid);
        if (trim) {
            puts_trim(b, m[i].content);
        } else {
            puts_(b, m[i].content);
        }
        puts_(b, close);
    }
}

static void fmt_llama2(buf *b, qf_chat_tmpl t, const qf_chat_msg *m, size_t n) {
    bool sys_tags = t != QF_CHAT_LLAMA2;
    bool bos_inside = t == QF_CHAT_LLAMA2_SYS_BOS;
    bool strip = t == QF_CHAT_LLAMA2_SYS_STRIP;
    bool in_turn = true; /* the first "[INST] " is written up front, no BOS */
    puts_(b, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        int k = role_kind(m[i].role);
        if (!in_turn) {
            in_turn = true;
            puts_(b, bos_inside ? "<s>[INST] " : "[INST] ");
        }
        if (k == R_SYSTEM) {
            if (sys_tags) puts_(b, "<<SYS>>\n");
        }
        if (strip) {
            puts_trim(b, m[i].content);
        } else {
            puts_(b, m[i].content);
        }
        if (k == R_SYSTEM) {
            puts_(b, sys_tags ? "\n<</SYS>>\n\n" : "\n");
        } else if (k == R_USER) {
            puts_(b, " [/INST]");
        } else {
            puts_(b, "</s>");
            in_turn = false;
        }
    }
}

static void fmt_mistral_v13(buf *b, qf_chat_tmpl t, const qf_chat_msg *m, size_t n) {
    const char *lead = t == QF_CHAT_MISTRAL_V1 ? " " : "";
    const char *trail = t == QF_CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
    bool trim_assistant = t == QF_CHAT_MISTRAL_V3;
    bool in_turn = false;
    for (size_t i = 0; i < n; i++) {
        int k = role_kind(m[i].role);
        if (!in_turn) {
            puts_(b, lead);
            puts_(b, "[INST]");
            puts_(b, trail);
            in_turn = true;
        }
        if (k == R_SYSTEM) {
            puts_(b, m[i].content);
            puts_(b, "\n\n");
        } else if (k == R_USER) {
            puts_(b, m[i].content);
            puts_(b, lead);
            puts_(b, "[/INST]");
        } else {
            puts_(b, trail);
            if (trim_assistant) {
                puts_trim(b, m[i].content);
            } else {
                puts_(b, m[i].content);
            }
            puts_(b, "</s>");
            in_turn = false;
        }
    }
}

static void fmt_mistral_v7(buf *b, qf_chat_tmpl t, const qf_chat_msg *m, size_t n) {
    const char *sp = t == QF_CHAT_MISTRAL_V7 ? " " : "";
    for (size_t i = 0; i < n; i++) {
        int k = role_kind(m[i].role);
        if (k == R_SYSTEM) {
            puts_(b, "[SYSTEM_PROMPT]");
            puts_(b, sp);
            puts_(b, m[i].content);
            puts_(b, "[/SYSTEM_PROMPT]");
        } else if (k == R_USER) {
            puts_(b, "[INST]");
            puts_(b, sp);
            puts_(b, m[i].content);
            puts_(b, "[/INST]");
        } else {
            puts_(b, sp);
            puts_(b, m[i].content);
            puts_(b, "</s>");
        }
    }
}

static void fmt_gemma(buf *b, const qf_chat_msg *m, size_t n, bool gen) {
    /* Gemma has no system turn: system texts (trimmed, concatenated) are held
     * and written at the start of the next non-model turn. */
    buf sys = {0};
    for (size_t i = 0; i < n; i++) {
        int k = role_kind(m[i].role);
        if (k == R_SYSTEM) {
            puts_trim(&sys, m[i].content);
            continue;
        }
        const char *role = k == R_ASSISTANT ? "model" : m[i].role;
        puts_(b, "<start_of_turn>");
        puts_(b, role);
        puts_(b, "\n");
        if (sys.len > 0 && k != R_ASSISTANT) {
            putn(b, sys.p, sys.len);
            puts_(b, "\n\n");
            sys.len = 0;
        }
        puts_trim(b, m[i].content);
        puts_(b, "<end_of_turn>\n");
    }
    if (sys.oom) b->oom = true;
    qf_free(sys.p);
    if (gen) puts_(b, "<start_of_turn>model\n");
}

static void fmt_orion(buf *b, const qf_chat_msg *m, size_t n) {
    buf sys = {0};
    for (size_t i = 0; i < n; i++) {
        int k = role_kind(m[i].role);
        if (k == R_SYSTEM) {
            puts_(&sys, m[i].content);
        } else if (k == R_USER) {
            puts_(b, "Human: ");
            if (sys.len > 0) {
                putn(b, sys.p, sys.len);
                puts_(b, "\n\n");
                sys.len = 0;
            }
            puts_(b, m[i].content);
            puts_(b, "\n\nAssistant: </s>");
        } else {
            puts_(b, m[i].content);
            puts_(b, "</s>");
        }
    }
    if (sys.oom) b->oom = true;
    qf_free(sys.p);
}

static void fmt_openchat(buf *b, const qf_chat_msg *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        if (role_kind(m[i].role) == R_SYSTEM) {
            puts_(b, m[i].content);
        } else {
            char first = (char)toupper((unsigned char)m[i].role[0]);
            puts_(b, "GPT4 Correct ");
            putn(b, &first, 1);
            puts_(b, m[i].role + 1);
            puts_(b, ": ");
            puts_(b, m[i].content);
        }
        puts_(b, "<|end_of_turn|>");
    }
    if (gen) puts_(b, "GPT4 Correct Assistant:");
}

/* Families with a fixed prefix and suffix per role. Only reached with roles
 * check_msgs allowed (system, user, assistant; tool for exaone4), so the
 * role kind always indexes inside the arrays. */
typedef struct role_fmt {
    const char *pre[4], *post[4]; /* by R_SYSTEM, R_USER, R_ASSISTANT, R_TOOL */
    const char *gen;
    bool trim;
} role_fmt;

static void fmt_by_role(buf *b, const role_fmt *f, const qf_chat_msg *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        int k = role_kind(m[i].role);
        puts_(b, f->pre[k]);
        if (f->trim) {
            puts_trim(b, m[i].content);
        } else {
            puts_(b, m[i].content);
        }
        puts_(b, f->post[k]);
    }
    if (gen && f->gen) puts_(b, f->gen);
}

#define DS_EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"

static const role_fmt F_VICUNA = {
    {"", "USER: ", "ASSISTANT: ", ""}, {"\n\n", "\n", "</s>\n", ""}, "ASSISTANT:", false};
static const role_fmt F_VICUNA_ORCA = {
    {"SYSTEM: ", "USER: ", "ASSISTANT: ", ""}, {"\n", "\n", "</s>\n", ""}, "ASSISTANT:", false};
static const role_fmt F_DEEPSEEK = {{"", "### Instruction:\n", "### Response:\n", ""},
                                    {"", "\n", "\n<|EOT|>\n", ""},
                                    "### Response:\n",
                                    false};
static const role_fmt F_DEEPSEEK2 = {
    {"", "User: ", "Assistant: ", ""}, {"\n\n", "\n\n", DS_EOS, ""}, "Assistant:", false};
static const role_fmt F_DEEPSEEK3 = {{"", "<\xef\xbd\x9cUser\xef\xbd\x9c>",
                                      "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>", ""},
                                     {"\n\n", "", DS_EOS, ""},
                                     "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>",
                                     false};
static const role_fmt F_COMMAND_R = {{"<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>",
                                      "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>",
                                      "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>", ""},
                                     {"<|END_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>",
                                      "<|END_OF_TURN_TOKEN|>", ""},
                                     "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
                                     true};
static const role_fmt F_MINICPM = {
    {"", "<\xe7\x94\xa8\xe6\x88\xb7>", "", ""}, {"", "<AI>", "", ""}, NULL, true};
static const role_fmt F_EXAONE = {{"[|system|]", "[|user|]", "[|assistant|]", "[|tool|]"},
                                  {"[|endofturn|]\n", "\n", "[|endofturn|]\n", "[|endofturn|]\n"},
                                  "[|assistant|]",
                                  true};
static const role_fmt F_SMOLVLM = {
    {"", "User: ", "Assistant: ", ""},
    {"\n\n", "<end_of_utterance>\n", "<end_of_utterance>\n", ""},
    "Assistant:",
    false};

static void fmt_bailing(buf *b, const qf_chat_msg *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        puts_(b, "<role>");
        if (role_kind(m[i].role) == R_USER) {
            puts_(b, "HUMAN");
        } else {
            for (const char *c = m[i].role; *c; c++) {
                char u = (char)toupper((unsigned char)*c);
                putn(b, &u, 1);
            }
        }
        puts_(b, "</role>");
        puts_(b, m[i].content);
    }
    if (gen) puts_(b, "<role>ASSISTANT</role>");
}

static void fmt_monarch(buf *b, const qf_chat_msg *m, size_t n, bool gen) {
    for (size_t i = 0; i < n; i++) {
        if (i > 0) puts_(b, "<s>"); /* BOS text inside the history, not before it */
        puts_(b, m[i].role);
        puts_(b, "\n");
        puts_(b, m[i].content);
        puts_(b, "</s>\n");
    }
    if (gen) puts_(b, "<s>assistant\n");
}

char *qf_chat_format(qf_chat_tmpl t, const qf_chat_msg *m, size_t n, bool gen, qf_err *err) {
    if (check_msgs(t, m, n, err) != QF_OK) return NULL;
    buf b = {0};
    switch (t) {
    case QF_CHAT_CHATML:
        fmt_role_wrap(&b, m, n, "<|im_start|>", "\n", "<|im_end|>\n", false);
        if (gen) puts_(&b, "<|im_start|>assistant\n");
        break;
    case QF_CHAT_LLAMA2:
    case QF_CHAT_LLAMA2_SYS:
    case QF_CHAT_LLAMA2_SYS_BOS:
    case QF_CHAT_LLAMA2_SYS_STRIP:
        fmt_llama2(&b, t, m, n);
        break;
    case QF_CHAT_MISTRAL_V1:
    case QF_CHAT_MISTRAL_V3:
    case QF_CHAT_MISTRAL_V3_TEKKEN:
        fmt_mistral_v13(&b, t, m, n);
        break;
    case QF_CHAT_MISTRAL_V7:
    case QF_CHAT_MISTRAL_V7_TEKKEN:
        fmt_mistral_v7(&b, t, m, n);
        break;
    case QF_CHAT_LLAMA3:
        fmt_role_wrap(&b, m, n, "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>", true);
        if (gen) puts_(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case QF_CHAT_LLAMA4:
        fmt_role_wrap(&b, m, n, "<|header_start|>", "<|header_end|>\n\n", "<|eot|>", true);
        if (gen) puts_(&b, "<|header_start|>assistant<|header_end|>\n\n");
        break;
    case QF_CHAT_GEMMA:
        fmt_gemma(&b, m, n, gen);
        break;
    case QF_CHAT_PHI3:
        fmt_role_wrap(&b, m, n, "<|", "|>\n", "<|end|>\n", false);
        if (gen) puts_(&b, "<|assistant|>\n");
        break;
    case QF_CHAT_PHI4:
        fmt_role_wrap(&b, m, n, "<|im_start|>", "<|im_sep|>", "<|im_end|>", false);
        if (gen) puts_(&b, "<|im_start|>assistant<|im_sep|>");
        break;
    case QF_CHAT_FALCON3:
        fmt_role_wrap(&b, m, n, "<|", "|>\n", "\n", false);
        if (gen) puts_(&b, "<|assistant|>\n");
        break;
    case QF_CHAT_ZEPHYR:
        fmt_role_wrap(&b, m, n, "<|", "|>\n", "<|endoftext|>\n", false);
        if (gen) puts_(&b, "<|assistant|>\n");
        break;
    case QF_CHAT_MONARCH:
        fmt_monarch(&b, m, n, gen);
        break;
    case QF_CHAT_ORION:
        fmt_orion(&b, m, n);
        break;
    case QF_CHAT_OPENCHAT:
        fmt_openchat(&b, m, n, gen);
        break;
    case QF_CHAT_VICUNA:
        fmt_by_role(&b, &F_VICUNA, m, n, gen);
        break;
    case QF_CHAT_VICUNA_ORCA:
        fmt_by_role(&b, &F_VICUNA_ORCA, m, n, gen);
        break;
    case QF_CHAT_DEEPSEEK:
        fmt_by_role(&b, &F_DEEPSEEK, m, n, gen);
        break;
    case QF_CHAT_DEEPSEEK2:
        fmt_by_role(&b, &F_DEEPSEEK2, m, n, gen);
        break;
    case QF_CHAT_DEEPSEEK3:
        fmt_by_role(&b, &F_DEEPSEEK3, m, n, gen);
        break;
    case QF_CHAT_COMMAND_R:
        fmt_by_role(&b, &F_COMMAND_R, m, n, gen);
        break;
    case QF_CHAT_CHATGLM3:
        puts_(&b, "[gMASK]sop");
        fmt_role_wrap(&b, m, n, "<|", "|>\n ", "", false);
        if (gen) puts_(&b, "<|assistant|>");
        break;
    case QF_CHAT_CHATGLM4:
        puts_(&b, "[gMASK]<sop>");
        fmt_role_wrap(&b, m, n, "<|", "|>\n", "", false);
        if (gen) puts_(&b, "<|assistant|>\n");
        break;
    case QF_CHAT_GLMEDGE:
        fmt_role_wrap(&b, m, n, "<|", "|>\n", "", false);
        if (gen) puts_(&b, "<|assistant|>");
        break;
    case QF_CHAT_MINICPM:
        fmt_by_role(&b, &F_MINICPM, m, n, gen);
        break;
    case QF_CHAT_EXAONE3:
    case QF_CHAT_EXAONE4:
        fmt_by_role(&b, &F_EXAONE, m, n, gen);
        break;
    case QF_CHAT_MEGREZ:
        fmt_role_wrap(&b, m, n, "<|role_start|>", "<|role_end|>", "<|turn_end|>", false);
        if (gen) puts_(&b, "<|role_start|>assistant<|role_end|>");
        break;
    case QF_CHAT_BAILING:
        fmt_bailing(&b, m, n, gen);
        break;
    case QF_CHAT_SMOLVLM:
        puts_(&b, "<|im_start|>"); /* SmolVLM's BOS-like opener, as llama.cpp writes it */
        fmt_by_role(&b, &F_SMOLVLM, m, n, gen);
        break;
    default:
        QF_ERR_SET(err, QF_ERR_INVALID, "chat template %d unknown", (int)t);
        return NULL;
    }
    /* A conversation of only empty contents may have written nothing at all;
     * still return an (empty) string rather than NULL. */
    if (!b.oom && !b.p) putn(&b, "", 0);
    if (b.oom) {
        qf_free(b.p);
        QF_ERR_SET(err, QF_ERR_NOMEM, "chat format (%s): out of memory", g_names[t]);
        return NULL;
    }
    return b.p;
}
