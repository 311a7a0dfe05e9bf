/* test_chat.c - chat template detection and formatting.
 *
 * Expected prompts are the reference outputs llama.cpp's
 * tests/test-chat-template.cpp lists for its built-in formatter with the same
 * six-message conversation (system, user, assistant, user, assistant with
 * surrounding spaces, user; generation prompt on), or, for families that file
 * has no case for, written by hand from the documented format. None were
 * produced by running this code.
 */
#include "qf_test.h"

#include "base/mem.h"
#include "tok/chat.h"

static const qf_chat_msg CONV[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};
#define NCONV (sizeof(CONV) / sizeof(CONV[0]))

#define DS_EOS "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define DS_USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define DS_ASSIST "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"
#define ZH_USER "<\xe7\x94\xa8\xe6\x88\xb7>" /* <用户> */

typedef struct ref_case {
    const char *name;
    const char *expected;
} ref_case;

static const ref_case REFS[] = {
    {"chatml",
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
     "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
     "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother "
     "question<|im_end|>\n<|im_start|>assistant\n"},
    {"llama2",
     "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]   I "
     "am an assistant   </s>[INST] Another question [/INST]"},
    {"llama2-sys",
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who "
     "are you [/INST]   I am an assistant   </s>[INST] Another question [/INST]"},
    {"llama2-sys-bos",
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s><s>[INST] "
     "Who are you [/INST]   I am an assistant   </s><s>[INST] Another question [/INST]"},
    {"llama2-sys-strip",
     "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>[INST] Who "
     "are you [/INST]I am an assistant</s>[INST] Another question [/INST]"},
    {"mistral-v1",
     " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]  "
     "  I am an assistant   </s> [INST] Another question [/INST]"},
    {"mistral-v3",
     "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>[INST] Who are you[/INST] I am "
     "an assistant</s>[INST] Another question[/INST]"},
    {"mistral-v3-tekken",
     "[INST]You are a helpful assistant\n\nHello[/INST]Hi there</s>[INST]Who are you[/INST]   I am "
     "an assistant   </s>[INST]Another question[/INST]"},
    {"mistral-v7",
     "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi "
     "there</s>[INST] Who are you[/INST]    I am an assistant   </s>[INST] Another question[/INST]"},
    {"mistral-v7-tekken",
     "[SYSTEM_PROMPT]You are a helpful assistant[/SYSTEM_PROMPT][INST]Hello[/INST]Hi "
     "there</s>[INST]Who are you[/INST]   I am an assistant   </s>[INST]Another question[/INST]"},
    {"llama3",
     "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
     "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_"
     "id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>"
     "\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an "
     "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother "
     "question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"llama4",
     "<|header_start|>system<|header_end|>\n\nYou are a helpful "
     "assistant<|eot|><|header_start|>user<|header_end|>\n\nHello<|eot|><|header_start|>assistant<|"
     "header_end|>\n\nHi there<|eot|><|header_start|>user<|header_end|>\n\nWho are "
     "you<|eot|><|header_start|>assistant<|header_end|>\n\nI am an "
     "assistant<|eot|><|header_start|>user<|header_end|>\n\nAnother "
     "question<|eot|><|header_start|>assistant<|header_end|>\n\n"},
    {"gemma",
     "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>model\n"
     "Hi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI "
     "am an assistant<end_of_turn>\n<start_of_turn>user\nAnother "
     "question<end_of_turn>\n<start_of_turn>model\n"},
    {"phi3",
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi "
     "there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   "
     "<|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n"},
    {"phi4",
     "<|im_start|>system<|im_sep|>You are a helpful "
     "assistant<|im_end|><|im_start|>user<|im_sep|>Hello<|im_end|><|im_start|>assistant<|im_sep|>Hi "
     "there<|im_end|><|im_start|>user<|im_sep|>Who are "
     "you<|im_end|><|im_start|>assistant<|im_sep|>   I am an assistant   "
     "<|im_end|><|im_start|>user<|im_sep|>Another "
     "question<|im_end|><|im_start|>assistant<|im_sep|>"},
    {"falcon3",
     "<|system|>\nYou are a helpful assistant\n<|user|>\nHello\n<|assistant|>\nHi "
     "there\n<|user|>\nWho are you\n<|assistant|>\n   I am an assistant   \n<|user|>\nAnother "
     "question\n<|assistant|>\n"},
    {"zephyr",
     "<|system|>\nYou are a helpful assistant<|endoftext|>\n<|user|>\nHello<|endoftext|>\n"
     "<|assistant|>\nHi there<|endoftext|>\n<|user|>\nWho are you<|endoftext|>\n<|assistant|>\n   I "
     "am an assistant   <|endoftext|>\n<|user|>\nAnother question<|endoftext|>\n<|assistant|>\n"},
    {"monarch",
     "system\nYou are a helpful assistant</s>\n<s>user\nHello</s>\n<s>assistant\nHi "
     "there</s>\n<s>user\nWho are you</s>\n<s>assistant\n   I am an assistant   "
     "</s>\n<s>user\nAnother question</s>\n<s>assistant\n"},
    {"orion",
     "Human: You are a helpful assistant\n\nHello\n\nAssistant: </s>Hi there</s>Human: Who are "
     "you\n\nAssistant: </s>   I am an assistant   </s>Human: Another question\n\nAssistant: </s>"},
    {"openchat",
     "You are a helpful assistant<|end_of_turn|>GPT4 Correct User: Hello<|end_of_turn|>GPT4 "
     "Correct Assistant: Hi there<|end_of_turn|>GPT4 Correct User: Who are you<|end_of_turn|>GPT4 "
     "Correct Assistant:    I am an assistant   <|end_of_turn|>GPT4 Correct User: Another "
     "question<|end_of_turn|>GPT4 Correct Assistant:"},
    {"vicuna",
     "You are a helpful assistant\n\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are "
     "you\nASSISTANT:    I am an assistant   </s>\nUSER: Another question\nASSISTANT:"},
    {"vicuna-orca",
     "SYSTEM: You are a helpful assistant\nUSER: Hello\nASSISTANT: Hi there</s>\nUSER: Who are "
     "you\nASSISTANT:    I am an assistant   </s>\nUSER: Another question\nASSISTANT:"},
    {"deepseek",
     "You are a helpful assistant### Instruction:\nHello\n### Response:\nHi there\n<|EOT|>\n### "
     "Instruction:\nWho are you\n### Response:\n   I am an assistant   \n<|EOT|>\n### "
     "Instruction:\nAnother question\n### Response:\n"},
    {"deepseek2",
     "You are a helpful assistant\n\nUser: Hello\n\nAssistant: Hi there" DS_EOS
     "User: Who are you\n\nAssistant:    I am an assistant   " DS_EOS
     "User: Another question\n\nAssistant:"},
    {"deepseek3",
     "You are a helpful assistant\n\n" DS_USER "Hello" DS_ASSIST "Hi there" DS_EOS DS_USER
     "Who are you" DS_ASSIST "   I am an assistant   " DS_EOS DS_USER "Another question" DS_ASSIST},
    {"command-r",
     "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>You are a helpful "
     "assistant<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hello<|END_OF_TURN_TOKEN|>"
     "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hi "
     "there<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Who are "
     "you<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>I am an "
     "assistant<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Another "
     "question<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"},
    {"chatglm3",
     "[gMASK]sop<|system|>\n You are a helpful assistant<|user|>\n Hello<|assistant|>\n Hi "
     "there<|user|>\n Who are you<|assistant|>\n    I am an assistant   <|user|>\n Another "
     "question<|assistant|>"},
    {"chatglm4",
     "[gMASK]<sop><|system|>\nYou are a helpful assistant<|user|>\nHello<|assistant|>\nHi "
     "there<|user|>\nWho are you<|assistant|>\n   I am an assistant   <|user|>\nAnother "
     "question<|assistant|>\n"},
    {"glmedge",
     "<|system|>\nYou are a helpful assistant<|user|>\nHello<|assistant|>\nHi there<|user|>\nWho "
     "are you<|assistant|>\n   I am an assistant   <|user|>\nAnother question<|assistant|>"},
    {"minicpm", "You are a helpful assistant" ZH_USER "Hello<AI>Hi there" ZH_USER
                "Who are you<AI>I am an assistant" ZH_USER "Another question<AI>"},
    {"exaone3",
     "[|system|]You are a helpful assistant[|endofturn|]\n[|user|]Hello\n[|assistant|]Hi "
     "there[|endofturn|]\n[|user|]Who are you\n[|assistant|]I am an "
     "assistant[|endofturn|]\n[|user|]Another question\n[|assistant|]"},
    {"exaone4",
     "[|system|]You are a helpful assistant[|endofturn|]\n[|user|]Hello\n[|assistant|]Hi "
     "there[|endofturn|]\n[|user|]Who are you\n[|assistant|]I am an "
     "assistant[|endofturn|]\n[|user|]Another question\n[|assistant|]"},
    {"megrez",
     "<|role_start|>system<|role_end|>You are a helpful "
     "assistant<|turn_end|><|role_start|>user<|role_end|>Hello<|turn_end|><|role_start|>assistant<|"
     "role_end|>Hi there<|turn_end|><|role_start|>user<|role_end|>Who are "
     "you<|turn_end|><|role_start|>assistant<|role_end|>   I am an assistant   "
     "<|turn_end|><|role_start|>user<|role_end|>Another "
     "question<|turn_end|><|role_start|>assistant<|role_end|>"},
    {"bailing",
     "<role>SYSTEM</role>You are a helpful assistant<role>HUMAN</role>Hello<role>ASSISTANT</role>Hi "
     "there<role>HUMAN</role>Who are you<role>ASSISTANT</role>   I am an assistant   "
     "<role>HUMAN</role>Another question<role>ASSISTANT</role>"},
    {"smolvlm",
     "<|im_start|>You are a helpful assistant\n\nUser: Hello<end_of_utterance>\nAssistant: Hi "
     "there<end_of_utterance>\nUser: Who are you<end_of_utterance>\nAssistant:    I am an "
     "assistant   <end_of_utterance>\nUser: Another question<end_of_utterance>\nAssistant:"},
};
#define NREFS (sizeof(REFS) / sizeof(REFS[0]))

static void test_format_reference_outputs(void) {
    /* every family has a reference case */
    ASSERT_EQ_INT(NREFS, QF_CHAT_COUNT - 1);
    for (size_t i = 0; i < NREFS; i++) {
        qf_chat_tmpl t = qf_chat_from_name(REFS[i].name);
        ASSERT_MSG(t != QF_CHAT_UNKNOWN, "name %s", REFS[i].name);
        qf_err err = {0};
        char *out = qf_chat_format(t, CONV, NCONV, true, &err);
        ASSERT_MSG(out != NULL, "%s: %s", REFS[i].name, err.msg);
        int same = strcmp(out, REFS[i].expected) == 0;
        if (!same) {
            fprintf(stderr, "family %s\n got: [%s]\nwant: [%s]\n", REFS[i].name, out,
                    REFS[i].expected);
        }
        qf_free(out);
        ASSERT_MSG(same, "family %s", REFS[i].name);
    }
}

static void test_generation_prompt_toggle(void) {
    qf_chat_msg m[] = {{"user", "Hi"}};
    char *a = qf_chat_format(QF_CHAT_CHATML, m, 1, false, NULL);
    char *b = qf_chat_format(QF_CHAT_CHATML, m, 1, true, NULL);
    ASSERT_STR_EQ(a, "<|im_start|>user\nHi<|im_end|>\n");
    ASSERT_STR_EQ(b, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    qf_free(a);
    qf_free(b);
    /* llama3 without a generation prompt: no assistant header, no BOS text */
    char *c = qf_chat_format(QF_CHAT_LLAMA3, m, 1, false, NULL);
    ASSERT_STR_EQ(c, "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
    qf_free(c);
    /* families without a generation prompt ignore the flag */
    char *d = qf_chat_format(QF_CHAT_MISTRAL_V7, m, 1, false, NULL);
    char *e = qf_chat_format(QF_CHAT_MISTRAL_V7, m, 1, true, NULL);
    ASSERT_STR_EQ(d, "[INST] Hi[/INST]");
    ASSERT_STR_EQ(e, "[INST] Hi[/INST]");
    qf_free(d);
    qf_free(e);
}

static void test_gemma_system_only_before_user(void) {
    /* system then user: merged into the user turn; a system message after
     * the last user turn has nowhere to go and, as in llama.cpp, is dropped
     * unless another user turn follows. */
    qf_chat_msg m[] = {{"system", "  Be brief. "}, {"user", " Q1 "}, {"system", "S2"},
                       {"assistant", "A1"}, {"user", "Q2"}};
    char *s = qf_chat_format(QF_CHAT_GEMMA, m, 5, false, NULL);
    ASSERT_STR_EQ(s, "<start_of_turn>user\nBe brief.\n\nQ1<end_of_turn>\n"
                     "<start_of_turn>model\nA1<end_of_turn>\n"
                     "<start_of_turn>user\nS2\n\nQ2<end_of_turn>\n");
    qf_free(s);
}

static void test_roles(void) {
    qf_chat_msg tool[] = {{"user", "x"}, {"tool", "42"}};
    /* chatml writes role names, so "tool" is fine */
    char *s = qf_chat_format(QF_CHAT_CHATML, tool, 2, false, NULL);
    ASSERT_STR_EQ(s, "<|im_start|>user\nx<|im_end|>\n<|im_start|>tool\n42<|im_end|>\n");
    qf_free(s);
    /* fixed-role families reject it */
    const qf_chat_tmpl fixed[] = {QF_CHAT_LLAMA2, QF_CHAT_MISTRAL_V7, QF_CHAT_DEEPSEEK3,
                                  QF_CHAT_COMMAND_R, QF_CHAT_VICUNA, QF_CHAT_EXAONE3};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        qf_err err = {0};
        char *o = qf_chat_format(fixed[i], tool, 2, true, &err);
        ASSERT_MSG(o == NULL, "%s accepted role tool", qf_chat_name(fixed[i]));
        ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
        ASSERT(strstr(err.msg, "tool") != NULL);
    }
    /* exaone4 knows the tool role */
    char *e = qf_chat_format(QF_CHAT_EXAONE4, tool, 2, false, NULL);
    ASSERT_STR_EQ(e, "[|user|]x\n[|tool|]42[|endofturn|]\n");
    qf_free(e);
}

static void test_bad_inputs(void) {
    qf_err err = {0};
    qf_chat_msg nul[] = {{"user", NULL}};
    ASSERT(qf_chat_format(QF_CHAT_CHATML, nul, 1, true, &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    ASSERT(strstr(err.msg, "content") != NULL);

    qf_err_clear(&err);
    ASSERT(qf_chat_format(QF_CHAT_CHATML, CONV, 0, true, &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    qf_err_clear(&err);
    ASSERT(qf_chat_format(QF_CHAT_CHATML, NULL, 3, true, &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);

    qf_chat_msg norole[] = {{NULL, "x"}};
    qf_err_clear(&err);
    ASSERT(qf_chat_format(QF_CHAT_LLAMA3, norole, 1, true, &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    qf_chat_msg empty_role[] = {{"", "x"}};
    ASSERT(qf_chat_format(QF_CHAT_CHATML, empty_role, 1, true, NULL) == NULL);

    qf_chat_msg ok[] = {{"user", "x"}};
    qf_err_clear(&err);
    ASSERT(qf_chat_format(QF_CHAT_UNKNOWN, ok, 1, true, &err) == NULL);
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    ASSERT(qf_chat_format((qf_chat_tmpl)999, ok, 1, true, NULL) == NULL);
    ASSERT(qf_chat_format(QF_CHAT_COUNT, ok, 1, true, NULL) == NULL);

    /* empty content is valid */
    qf_chat_msg e[] = {{"user", ""}};
    char *s = qf_chat_format(QF_CHAT_CHATML, e, 1, false, NULL);
    ASSERT_STR_EQ(s, "<|im_start|>user\n<|im_end|>\n");
    qf_free(s);
    /* minicpm with only empty assistant content writes nothing: "" not NULL */
    qf_chat_msg ea[] = {{"assistant", "  "}};
    s = qf_chat_format(QF_CHAT_MINICPM, ea, 1, true, NULL);
    ASSERT_STR_EQ(s, "");
    qf_free(s);
}

static void test_oom(void) {
    /* every allocation failure returns NULL + NOMEM, never a partial string */
    int saw_success = 0;
    for (long n = 0; n < 64 && !saw_success; n++) {
        qf_err err = {0};
        qf_mem_fail_after(n);
        char *s = qf_chat_format(QF_CHAT_GEMMA, CONV, NCONV, true, &err);
        qf_mem_fail_after(-1);
        if (s) {
            saw_success = 1;
            ASSERT(strncmp(s, "<start_of_turn>user\nYou are", 27) == 0);
            qf_free(s);
        } else {
            ASSERT_EQ_INT(err.code, QF_ERR_NOMEM);
        }
    }
    ASSERT(saw_success);
}

/* ---- detection ---- */

typedef struct det_case {
    const char *what;
    const char *jinja;
    qf_chat_tmpl want;
} det_case;

static const det_case DETS[] = {
    {"Qwen2.5-Instruct",
     "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == "
     "'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are "
     "Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
     "{%- endif %}\n{%- for message in messages %}\n    {{- '<|im_start|>' + message.role + '\\n' + "
     "message.content + '<|im_end|>' + '\\n' }}\n{%- endfor %}\n{%- if add_generation_prompt %}\n"
     "    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n",
     QF_CHAT_CHATML},
    {"Llama-3.1-Instruct",
     "{{- bos_token }}\n{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n"
     "{%- endif %}\n{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
     "{{- \"Environment: ipython\\n\" }}\n{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n"
     "{%- for message in messages %}\n    {{- '<|start_header_id|>' + message['role'] + "
     "'<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}\n{%- endfor %}\n"
     "{%- if add_generation_prompt %}\n    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' "
     "}}\n{%- endif %}\n",
     QF_CHAT_LLAMA3},
    {"Mistral-7B-Instruct-v0.1",
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
     "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
     "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] "
     "' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ "
     "message['content'] + eos_token + ' ' }}{% endif %}{% endfor %}",
     QF_CHAT_LLAMA2},
    {"Mistral-7B-Instruct-v0.3",
     "{{- bos_token }}\n{%- for message in loop_messages %}\n    {%- if message[\"role\"] == "
     "\"user\" %}\n        {%- if tools is not none and (message == user_messages[-1]) %}\n"
     "            {{- \"[AVAILABLE_TOOLS] [\" }}\n        {%- endif %}\n        {{- \"[INST] \" + "
     "message[\"content\"] + \"[/INST]\" }}\n    {%- elif message[\"role\"] == \"assistant\" %}\n"
     "        {{- \" \" + message[\"content\"]|trim + eos_token}}\n    {%- endif %}\n{%- endfor %}\n",
     QF_CHAT_MISTRAL_V3},
    {"Mistral-Nemo-Instruct-2407",
     "{%- for message in loop_messages %}\n    {%- if message[\"role\"] == \"user\" %}\n"
     "        {%- if tools is not none %}{{- \"[AVAILABLE_TOOLS][\" }}{%- endif %}\n"
     "        {{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}\n    {%- endif %}\n"
     "{%- endfor %}\n",
     QF_CHAT_MISTRAL_V3_TEKKEN},
    {"Mistral-Small-3.1",
     "{%- set today = strftime_now(\"%Y-%m-%d\") %}\n{{- bos_token }}\n{%- if system_message is "
     "defined %}\n    {{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}\n"
     "{%- endif %}\n{%- for message in loop_messages %}\n    {%- if message['role'] == 'user' %}\n"
     "        {{- '[INST]' + message['content'] + '[/INST]' }}\n    {%- endif %}\n{%- endfor %}\n",
     QF_CHAT_MISTRAL_V7},
    {"Llama-2-chat",
     "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
     "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
     "system_message = false %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 "
     "and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
     "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% "
     "endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' "
     "[/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + "
     "eos_token }}{% endif %}{% endfor %}",
     QF_CHAT_LLAMA2_SYS_STRIP},
    {"gemma-2-it",
     "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
     "supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') "
     "%}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ "
     "'<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor "
     "%}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
     QF_CHAT_GEMMA},
    {"Phi-3-mini-4k-instruct",
     "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + "
     "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + "
     "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' "
     "%}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if "
     "add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}",
     QF_CHAT_PHI3},
    {"phi-4",
     "{% for message in messages %}{% if (message['role'] == 'system') "
     "%}{{'<|im_start|>system<|im_sep|>' + message['content'] + '<|im_end|>'}}{% endif %}{% endfor "
     "%}",
     QF_CHAT_PHI4},
    {"DeepSeek-R1-Distill",
     "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif "
     "%}{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}{%- if message['role'] "
     "== 'user' %}{{'" DS_USER "' + message['content']}}{%- endif %}{%- if message['role'] == "
     "'assistant' %}{{'" DS_ASSIST "' + content + '" DS_EOS "'}}{%- endif %}{%- endfor %}",
     QF_CHAT_DEEPSEEK3},
    {"c4ai-command-r",
     "{{ bos_token }}{% if system_message != false %}{{ "
     "'<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>' + system_message + '<|END_OF_TURN_TOKEN|>' }}{% "
     "endif %}{% if message['role'] == 'user' %}{{ '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + "
     "content.strip() + '<|END_OF_TURN_TOKEN|>' }}{% endif %}",
     QF_CHAT_COMMAND_R},
    {"stablelm-zephyr",
     "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + "
     "message['content'] + '<|endoftext|>\\n' }}{% else %}{{ '<|' + message['role'] + '|>\\n' + "
     "message['content'] + '<|endoftext|>\\n' }}{% endif %}{% endfor %}",
     QF_CHAT_ZEPHYR},
    {"Falcon3-Instruct",
     "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + "
     "message['content'] + '\\n' }}{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' + "
     "message['content'] + '</s>\\n' }}{% endif %}{% endfor %}",
     QF_CHAT_FALCON3},
    {"vicuna", "USER: {{ message['content'] }}\nASSISTANT: {{ message['content'] }}",
     QF_CHAT_VICUNA},
    {"deepseek-coder",
     "{{'### Instruction:\\n' + message['content'] + '\\n'}}{{'### Response:\\n' + "
     "message['content'] + '\\n<|EOT|>\\n'}}",
     QF_CHAT_DEEPSEEK},
    /* names are accepted as templates, as llama.cpp does */
    {"name gemma", "gemma", QF_CHAT_GEMMA},
    {"name mistral-v7", "mistral-v7", QF_CHAT_MISTRAL_V7},
    /* a template starting with "mistral" is a mistral/llama2 variant */
    {"mistral prefix", "mistral-custom", QF_CHAT_LLAMA2},
    /* known to llama.cpp, not formatted here: stays unknown, not misfiled */
    {"granite",
     "{{- '<|start_of_role|>' + message['role'] + '<|end_of_role|>' + message['content'] + "
     "'<|end_of_text|>\\n' }}",
     QF_CHAT_UNKNOWN},
    {"plain", "{% for m in messages %}{{ m.content }}\n{% endfor %}", QF_CHAT_UNKNOWN},
    {"empty", "", QF_CHAT_UNKNOWN},
};

static void test_detect(void) {
    for (size_t i = 0; i < sizeof(DETS) / sizeof(DETS[0]); i++) {
        qf_chat_tmpl got = qf_chat_detect(DETS[i].jinja);
        ASSERT_MSG(got == DETS[i].want, "%s: got %s want %s", DETS[i].what, qf_chat_name(got),
                   qf_chat_name(DETS[i].want));
    }
    ASSERT_EQ_INT(qf_chat_detect(NULL), QF_CHAT_UNKNOWN);
}

static void test_names(void) {
    /* qf_chat_names lists every family exactly once, each name round-trips */
    char list[2048];
    snprintf(list, sizeof(list), "%s", qf_chat_names());
    int seen[QF_CHAT_COUNT] = {0};
    int items = 0;
    for (char *tok = strtok(list, ", "); tok; tok = strtok(NULL, ", ")) {
        qf_chat_tmpl t = qf_chat_from_name(tok);
        ASSERT_MSG(t != QF_CHAT_UNKNOWN, "listed name %s unknown", tok);
        ASSERT_STR_EQ(qf_chat_name(t), tok);
        ASSERT_MSG(!seen[t], "%s listed twice", tok);
        seen[t] = 1;
        items++;
    }
    ASSERT_EQ_INT(items, QF_CHAT_COUNT - 1);
    ASSERT_STR_EQ(qf_chat_name(QF_CHAT_UNKNOWN), "unknown");
    ASSERT_STR_EQ(qf_chat_name((qf_chat_tmpl)-3), "unknown");
    ASSERT_STR_EQ(qf_chat_name(QF_CHAT_COUNT), "unknown");
    ASSERT_EQ_INT(qf_chat_from_name(NULL), QF_CHAT_UNKNOWN);
    ASSERT_EQ_INT(qf_chat_from_name("ChatML"), QF_CHAT_UNKNOWN);
    ASSERT_EQ_INT(qf_chat_from_name("unknown"), QF_CHAT_UNKNOWN);
    ASSERT_EQ_INT(qf_chat_from_name("llama3"), QF_CHAT_LLAMA3);
    ASSERT_EQ_INT(qf_chat_from_name("phi3"), QF_CHAT_PHI3);
    ASSERT_EQ_INT(qf_chat_from_name("command-r"), QF_CHAT_COMMAND_R);
}

static void test_resolve(void) {
    qf_err err = {0};
    /* recognised template */
    ASSERT_EQ_INT(qf_chat_resolve(DETS[0].jinja, NULL, &err), QF_CHAT_CHATML);
    ASSERT_EQ_INT(qf_chat_resolve("<start_of_turn>", NULL, &err), QF_CHAT_GEMMA);
    ASSERT_EQ_INT(err.code, QF_OK);
    /* unknown or missing -> chatml fallback, no error */
    ASSERT_EQ_INT(qf_chat_resolve("{{ messages }}", NULL, &err), QF_CHAT_CHATML);
    ASSERT_EQ_INT(qf_chat_resolve(NULL, NULL, &err), QF_CHAT_CHATML);
    ASSERT_EQ_INT(qf_chat_resolve("", NULL, &err), QF_CHAT_CHATML);
    ASSERT_EQ_INT(err.code, QF_OK);
    /* override wins over the template */
    ASSERT_EQ_INT(qf_chat_resolve("<start_of_turn>", "llama3", &err), QF_CHAT_LLAMA3);
    ASSERT_EQ_INT(qf_chat_resolve(NULL, "mistral-v7", &err), QF_CHAT_MISTRAL_V7);
    ASSERT_EQ_INT(err.code, QF_OK);
    /* bad override */
    ASSERT_EQ_INT(qf_chat_resolve("<start_of_turn>", "no-such-template", &err), QF_CHAT_UNKNOWN);
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    ASSERT(strstr(err.msg, "no-such-template") != NULL);
    ASSERT(strstr(err.msg, "chatml") != NULL); /* lists the known names */
    qf_err_clear(&err);
    ASSERT_EQ_INT(qf_chat_resolve(NULL, "", &err), QF_CHAT_UNKNOWN);
    ASSERT_EQ_INT(err.code, QF_ERR_INVALID);
    /* NULL err is allowed */
    ASSERT_EQ_INT(qf_chat_resolve(NULL, "bogus", NULL), QF_CHAT_UNKNOWN);
}

int main(void) {
    RUN_TEST(test_format_reference_outputs);
    RUN_TEST(test_generation_prompt_toggle);
    RUN_TEST(test_gemma_system_only_before_user);
    RUN_TEST(test_roles);
    RUN_TEST(test_bad_inputs);
    RUN_TEST(test_oom);
    RUN_TEST(test_detect);
    RUN_TEST(test_names);
    RUN_TEST(test_resolve);
    TEST_MAIN_END();
}
