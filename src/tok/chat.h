/* chat.h - chat templates: turn a list of messages into one prompt string.
 *
 * Models carry a Jinja template in the GGUF key `tokenizer.chat_template`.
 * qforge does not run Jinja. Like llama.cpp (llm_chat_detect_template +
 * llm_chat_apply_template) it recognises the template family from marker
 * substrings and formats with built-in code, producing byte-for-byte the
 * text llama.cpp's built-in formatter produces for the same family.
 *
 * Families and what they write (role R, content C; "trim" = leading and
 * trailing ASCII whitespace removed; S = a system message's content):
 *
 *   chatml       "<|im_start|>R\nC<|im_end|>\n"        gen "<|im_start|>assistant\n"
 *   llama2       "[INST] " then user "C [/INST]", assistant "C</s>" and
 *                "[INST] " opens the next turn; system "S\n" (no <<SYS>>)
 *   llama2-sys   as llama2, system "<<SYS>>\nS\n<</SYS>>\n\n"
 *   llama2-sys-bos   as llama2-sys, later turns open with "<s>[INST] "
 *   llama2-sys-strip as llama2-sys, every content trimmed
 *   mistral-v1   " [INST] " + [S "\n\n"] + "C [/INST]", assistant " C</s>"
 *   mistral-v3   "[INST] " + [S "\n\n"] + "C[/INST]", assistant " trim(C)</s>"
 *   mistral-v3-tekken "[INST]" + [S "\n\n"] + "C[/INST]", assistant "C</s>"
 *   mistral-v7   "[SYSTEM_PROMPT] S[/SYSTEM_PROMPT]", "[INST] C[/INST]", " C</s>"
 *   mistral-v7-tekken  as v7 without the spaces after the openers / before C
 *   llama3       "<|start_header_id|>R<|end_header_id|>\n\ntrim(C)<|eot_id|>"
 *                gen "<|start_header_id|>assistant<|end_header_id|>\n\n"
 *   llama4       "<|header_start|>R<|header_end|>\n\ntrim(C)<|eot|>"
 *   gemma        "<start_of_turn>R\ntrim(C)<end_of_turn>\n", R "assistant"
 *                written "model"; system contents (trimmed, concatenated)
 *                are put before the next non-model turn's content + "\n\n"
 *                gen "<start_of_turn>model\n"
 *   phi3         "<|R|>\nC<|end|>\n"                     gen "<|assistant|>\n"
 *   phi4         "<|im_start|>R<|im_sep|>C<|im_end|>"     gen "<|im_start|>assistant<|im_sep|>"
 *   falcon3      "<|R|>\nC\n"                             gen "<|assistant|>\n"
 *   zephyr       "<|R|>\nC<|endoftext|>\n"                gen "<|assistant|>\n"
 *   monarch      "R\nC</s>\n", turns after the first prefixed "<s>"; gen "<s>assistant\n"
 *   orion        user "Human: " [S "\n\n"] "C\n\nAssistant: </s>", assistant "C</s>"
 *   openchat     system "C<|end_of_turn|>", others "GPT4 Correct Rcap: C<|end_of_turn|>"
 *                (Rcap: first letter upper-cased)  gen "GPT4 Correct Assistant:"
 *   vicuna       system "S\n\n", "USER: C\n", "ASSISTANT: C</s>\n"  gen "ASSISTANT:"
 *   vicuna-orca  as vicuna, system "SYSTEM: S\n"
 *   deepseek     system "S", "### Instruction:\nC\n", "### Response:\nC\n<|EOT|>\n"
 *                gen "### Response:\n"
 *   deepseek2    system "S\n\n", "User: C\n\n", "Assistant: C<｜end▁of▁sentence｜>"
 *                gen "Assistant:"
 *   deepseek3    system "S\n\n", "<｜User｜>C", "<｜Assistant｜>C<｜end▁of▁sentence｜>"
 *                gen "<｜Assistant｜>"
 *   command-r    "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>trim(C)<|END_OF_TURN_TOKEN|>"
 *                (USER_TOKEN / CHATBOT_TOKEN for user / assistant)
 *                gen "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
 *   chatglm3     "[gMASK]sop" then "<|R|>\n C"            gen "<|assistant|>"
 *   chatglm4     "[gMASK]<sop>" then "<|R|>\nC"           gen "<|assistant|>\n"
 *   glmedge      "<|R|>\nC"                               gen "<|assistant|>"
 *   minicpm      user "<用户>trim(C)<AI>", others "trim(C)"
 *   exaone3      "[|system|]trim(C)[|endofturn|]\n", "[|user|]trim(C)\n",
 *                "[|assistant|]trim(C)[|endofturn|]\n"   gen "[|assistant|]"
 *   exaone4      as exaone3 plus "[|tool|]trim(C)[|endofturn|]\n"
 *   megrez       "<|role_start|>R<|role_end|>C<|turn_end|>"  gen "<|role_start|>assistant<|role_end|>"
 *   bailing      "<role>R'</role>C", R' = upper-cased role, user -> HUMAN
 *                gen "<role>ASSISTANT</role>"
 *   smolvlm      "<|im_start|>" then system "S\n\n", "User: C<end_of_utterance>\n",
 *                "Assistant: C<end_of_utterance>\n"        gen "Assistant:"
 *
 * ("gen" is what add_assistant appends. Families without one - llama2*,
 * mistral*, orion, minicpm - end a user turn in a state where the model
 * answers next, so add_assistant changes nothing for them, as in llama.cpp.)
 *
 * BOS: the output never starts with the BOS token text ("<s>",
 * "<|begin_of_text|>", "<bos>", "<｜begin▁of▁sentence｜>"); it is added by
 * the tokenizer when the model's tokenizer.ggml.add_bos_token says so, the
 * same as llama.cpp. The only BOS/special text written is what the family
 * puts between turns, exactly as llama.cpp does: "<s>" before later turns in
 * llama2-sys-bos and monarch, EOS text ("</s>", "<|endoftext|>", ...) after
 * turns, the "[gMASK]sop" / "[gMASK]<sop>" prefix of chatglm3/4 and the
 * leading "<|im_start|>" of smolvlm. Tokenize the result with special-token
 * parsing on so that these markers become their token ids.
 *
 * Roles: families that write the role name (chatml, llama3, llama4, gemma,
 * phi3, phi4, falcon3, zephyr, monarch, openchat, chatglm3/4, glmedge, megrez,
 * bailing) accept any non-empty role ("tool", "ipython", ...). The others
 * know only "system", "user" and "assistant" (exaone4 also "tool"); another
 * role there is an error rather than being silently dropped or treated as the
 * assistant (where llama.cpp would do either).
 *
 * Thread-safety: all functions are pure (no shared state) except that
 * qf_chat_resolve may log one warning.
 */
#ifndef QF_CHAT_H
#define QF_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

typedef struct qf_chat_msg {
    const char *role;    /* "system", "user", "assistant", ... (borrowed) */
    const char *content; /* UTF-8 text (borrowed) */
} qf_chat_msg;

typedef enum qf_chat_tmpl {
    QF_CHAT_UNKNOWN = 0,
    QF_CHAT_CHATML,
    QF_CHAT_LLAMA2,
    QF_CHAT_LLAMA2_SYS,
    QF_CHAT_LLAMA2_SYS_BOS,
    QF_CHAT_LLAMA2_SYS_STRIP,
    QF_CHAT_MISTRAL_V1,
    QF_CHAT_MISTRAL_V3,
    QF_CHAT_MISTRAL_V3_TEKKEN,
    QF_CHAT_MISTRAL_V7,
    QF_CHAT_MISTRAL_V7_TEKKEN,
    QF_CHAT_LLAMA3,
    QF_CHAT_LLAMA4,
    QF_CHAT_GEMMA,
    QF_CHAT_PHI3,
    QF_CHAT_PHI4,
    QF_CHAT_FALCON3,
    QF_CHAT_ZEPHYR,
    QF_CHAT_MONARCH,
    QF_CHAT_ORION,
    QF_CHAT_OPENCHAT,
    QF_CHAT_VICUNA,
    QF_CHAT_VICUNA_ORCA,
    QF_CHAT_DEEPSEEK,
    QF_CHAT_DEEPSEEK2,
    QF_CHAT_DEEPSEEK3,
    QF_CHAT_COMMAND_R,
    QF_CHAT_CHATGLM3,
    QF_CHAT_CHATGLM4,
    QF_CHAT_GLMEDGE,
    QF_CHAT_MINICPM,
    QF_CHAT_EXAONE3,
    QF_CHAT_EXAONE4,
    QF_CHAT_MEGREZ,
    QF_CHAT_BAILING,
    QF_CHAT_SMOLVLM,
    QF_CHAT_COUNT /* number of values, not a family */
} qf_chat_tmpl;

/* Family of a Jinja template string, by llama.cpp's marker rules and in its
 * order (e.g. "<|im_start|>" -> chatml unless "<|im_sep|>" (phi4) or
 * "<end_of_utterance>" (smolvlm); "[INST]" -> mistral/llama2 variants;
 * "<|start_header_id|>" + "<|end_header_id|>" -> llama3). A string that is
 * exactly a family name ("chatml") gives that family. QF_CHAT_UNKNOWN for
 * NULL, "", no match, or a family llama.cpp knows but qforge does not format
 * (granite, gigachat, rwkv-world, yandex, hunyuan, kimi-k2, dots1). */
qf_chat_tmpl qf_chat_detect(const char *jinja);

/* Family by name as llama.cpp spells it ("chatml", "llama2", "llama2-sys",
 * "mistral-v7", "llama3", "gemma", "phi3", "deepseek3", "command-r", ...;
 * see qf_chat_names). Case-sensitive. QF_CHAT_UNKNOWN for NULL or unknown. */
qf_chat_tmpl qf_chat_from_name(const char *name);

/* Name of a family (static string); "unknown" for QF_CHAT_UNKNOWN or an
 * out-of-range value. */
const char *qf_chat_name(qf_chat_tmpl t);

/* All family names, comma-separated ("chatml, llama2, ..."), static string,
 * for usage and error messages. */
const char *qf_chat_names(void);

/* Format n messages in family t. add_assistant appends the assistant turn
 * prefix ("gen" above) so the model continues as the assistant.
 * Returns a NUL-terminated string the caller frees with qf_free, or NULL and
 * err: QF_ERR_INVALID for t unknown/out of range, msgs NULL, n == 0, a NULL
 * role or content, an empty role, or a role the family cannot express;
 * QF_ERR_NOMEM when allocation fails. */
char *qf_chat_format(qf_chat_tmpl t, const qf_chat_msg *msgs, size_t n, bool add_assistant,
                     qf_err *err);

/* The family to use for a model: override_name (NULL = none; e.g. from
 * --chat-template NAME) wins when given; otherwise qf_chat_detect(jinja).
 * When the template is missing or not recognised the result is chatml and one
 * qf_warn names the fallback and how to override it.
 * Returns QF_CHAT_UNKNOWN and fills err (QF_ERR_INVALID, message listing the
 * known names) when override_name is not a known family name. */
qf_chat_tmpl qf_chat_resolve(const char *jinja, const char *override_name, qf_err *err);

#endif
