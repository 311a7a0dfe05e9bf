/* test_request.c - parsing and validating request bodies (OpenAI chat and
 * completions, Ollama chat and generate), UTF-8 checks, keep-alive
 * durations; bad input of every kind gets an error naming the field;
 * allocation failures and random mutations of valid bodies never crash. */
#include <math.h>

#include "base/mem.h"
#include "qf_test.h"
#include "serve/serve_int.h"

static qf_status parse(serve_api api, const char *body, serve_req *r, char *param, qf_err *err) {
    return serve_req_parse(api, body, strlen(body), r, param, 128, err);
}

static void test_openai_chat_full(void) {
    const char *body =
        "{\"model\":\"m1\",\"messages\":[{\"role\":\"developer\",\"content\":\"be nice\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\","
        "\"text\":\"b\"}]},"
        "{\"role\":\"assistant\",\"content\":null}],"
        "\"temperature\":0.25,\"top_p\":0.5,\"n\":3,\"stream\":true,\"stream_options\":{\"include_"
        "usage\":true},"
        "\"stop\":[\"x\",\"\",\"yz\"],\"max_tokens\":77,\"presence_penalty\":-1.5,\"frequency_"
        "penalty\":2,"
        "\"seed\":42,\"user\":\"u\",\"logprobs\":false,\"tools\":[],\"top_k\":5,\"min_p\":0.1,"
        "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"n\",\"schema\":{"
        "\"type\":\"object\"}}}}";
    serve_req r;
    char param[128];
    qf_err err = {0};
    ASSERT_EQ_INT(parse(SERVE_OPENAI_CHAT, body, &r, param, &err), QF_OK);
    ASSERT_STR_EQ(r.model, "m1");
    ASSERT_EQ_INT(r.n_msgs, 3);
    ASSERT_STR_EQ(r.msgs[0].role, "system"); /* developer is OpenAI's new name for it */
    ASSERT_STR_EQ(r.msgs[1].content, "a\nb");
    ASSERT_STR_EQ(r.msgs[2].content, "");
    ASSERT_NEAR(r.sample.temperature, 0.25, 1e-7);
    ASSERT_NEAR(r.sample.top_p, 0.5, 1e-7);
    ASSERT_EQ_INT(r.sample.top_k, 5);
    ASSERT_NEAR(r.sample.min_p, 0.1, 1e-7);
    ASSERT_NEAR(r.sample.presence_penalty, -1.5, 1e-7);
    ASSERT_NEAR(r.sample.frequency_penalty, 2, 1e-7);
    ASSERT_EQ_INT(r.sample.seed, 42);
    ASSERT_EQ_INT(r.n, 3);
    ASSERT(r.stream && r.include_usage);
    ASSERT_EQ_INT(r.n_stop, 2); /* the empty one is dropped */
    ASSERT_STR_EQ(r.stop[1], "yz");
    ASSERT_EQ_INT(r.max_tokens, 77);
    ASSERT_STR_EQ(r.json_schema, "{\"type\":\"object\"}");
    serve_req_deinit(&r);
}

static void test_defaults(void) {
    serve_req r;
    char param[128];
    ASSERT_EQ_INT(parse(SERVE_OPENAI_CHAT,
                        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r, param, NULL),
                  QF_OK);
    qf_sample_params d = qf_sample_params_default();
    ASSERT(r.model == NULL);
    ASSERT(!r.stream); /* OpenAI: off unless asked */
    ASSERT_EQ_INT(r.n, 1);
    ASSERT_EQ_INT(r.max_tokens, 0);
    ASSERT_NEAR(r.sample.temperature, d.temperature, 0);
    ASSERT(r.json_schema == NULL);
    serve_req_deinit(&r);
    ASSERT_EQ_INT(parse(SERVE_OLLAMA_CHAT, "{\"model\":\"x\",\"messages\":[]}", &r, param, NULL),
                  QF_OK);
    ASSERT(r.stream);           /* Ollama: on unless stream:false */
    ASSERT_EQ_INT(r.n_msgs, 0); /* a load request */
    serve_req_deinit(&r);
    /* null means absent */
    ASSERT_EQ_INT(
        parse(SERVE_OPENAI_CHAT,
              "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":null,"
              "\"temperature\":null,\"stop\":null}",
              &r, param, NULL),
        QF_OK);
    ASSERT_EQ_INT(r.max_tokens, 0);
    ASSERT_EQ_INT(r.n_stop, 0);
    serve_req_deinit(&r);
}

static void test_ollama(void) {
    serve_req r;
    char param[128];
    const char *body = "{\"model\":\"m:latest\",\"prompt\":\"hi\",\"system\":\"sys\",\"raw\":false,"
                       "\"stream\":false,"
                       "\"format\":\"json\",\"keep_alive\":\"1h30m\",\"context\":[1,2,3],"
                       "\"options\":{\"num_predict\":-1,\"temperature\":0,\"top_k\":3,\"seed\":-1,"
                       "\"stop\":[\"\\n\"],"
                       "\"repeat_penalty\":1.1,\"num_gpu\":99,\"mirostat\":2,\"use_mmap\":true}}";
    ASSERT_EQ_INT(parse(SERVE_OLLAMA_GENERATE, body, &r, param, NULL), QF_OK);
    ASSERT_STR_EQ(r.model, "m:latest");
    ASSERT_STR_EQ(r.prompt, "hi");
    ASSERT_STR_EQ(r.system, "sys");
    ASSERT(!r.stream);
    ASSERT_STR_EQ(r.json_schema, "json");
    ASSERT(r.has_keep_alive);
    ASSERT_NEAR(r.keep_alive_s, 5400, 1e-9);
    ASSERT_EQ_INT(r.n_prompt_ids, 3);
    ASSERT_EQ_INT(r.prompt_ids[2], 3);
    ASSERT_EQ_INT(r.max_tokens, 0); /* -1: no limit */
    ASSERT_NEAR(r.sample.temperature, 0, 0);
    ASSERT_EQ_INT(r.sample.top_k, 3);
    ASSERT(r.sample.seed == QF_SAMPLE_SEED_RANDOM);
    ASSERT_EQ_INT(r.n_stop, 1);
    ASSERT_NEAR(r.sample.repeat_penalty, 1.1, 1e-6);
    serve_req_deinit(&r);
    ASSERT_EQ_INT(
        parse(SERVE_OLLAMA_CHAT,
              "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
              "\"keep_alive\":-5,\"format\":{\"type\":\"object\"},\"options\":{\"num_predict\":9}}",
              &r, param, NULL),
        QF_OK);
    ASSERT_NEAR(r.keep_alive_s, -1, 0);
    ASSERT_STR_EQ(r.json_schema, "{\"type\":\"object\"}");
    ASSERT_EQ_INT(r.max_tokens, 9);
    serve_req_deinit(&r);
}

static void test_completion_prompts(void) {
    serve_req r;
    char param[128];
    ASSERT_EQ_INT(parse(SERVE_OPENAI_COMPLETION, "{\"prompt\":\"abc\"}", &r, param, NULL), QF_OK);
    ASSERT_STR_EQ(r.prompt, "abc");
    serve_req_deinit(&r);
    ASSERT_EQ_INT(parse(SERVE_OPENAI_COMPLETION, "{\"prompt\":[\"abc\"]}", &r, param, NULL), QF_OK);
    ASSERT_STR_EQ(r.prompt, "abc");
    serve_req_deinit(&r);
    ASSERT_EQ_INT(parse(SERVE_OPENAI_COMPLETION, "{\"prompt\":[5,6,7]}", &r, param, NULL), QF_OK);
    ASSERT_EQ_INT(r.n_prompt_ids, 3);
    ASSERT_EQ_INT(r.prompt_ids[0], 5);
    serve_req_deinit(&r);
    ASSERT_EQ_INT(parse(SERVE_OPENAI_COMPLETION, "{\"prompt\":[[5,6]]}", &r, param, NULL), QF_OK);
    ASSERT_EQ_INT(r.n_prompt_ids, 2);
    serve_req_deinit(&r);
    qf_err err = {0};
    ASSERT_EQ_INT(parse(SERVE_OPENAI_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", &r, param, &err),
                  QF_ERR_UNSUPPORTED);
    ASSERT(strstr(err.msg, "2 prompts"));
    ASSERT_EQ_INT(parse(SERVE_OPENAI_COMPLETION, "{\"prompt\":[1,-2]}", &r, param, &err),
                  QF_ERR_INVALID);
    ASSERT_STR_EQ(param, "prompt[1]");
}

typedef struct bad_case {
    serve_api api;
    const char *body;
    const char *param;  /* expected param ("" = none) */
    const char *needle; /* expected in the message */
} bad_case;

static void test_bad_input(void) {
    static const bad_case cases[] = {
        {SERVE_OPENAI_CHAT, "", "", "empty"},
        {SERVE_OPENAI_CHAT, "   ", "", "malformed JSON"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[", "", "malformed JSON"},
        {SERVE_OPENAI_CHAT, "{} {}", "", "after the object"},
        {SERVE_OPENAI_CHAT, "[]", "", "must be a JSON object"},
        {SERVE_OPENAI_CHAT, "\"str\"", "", "must be a JSON object"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\"}]}", "",
         "UTF-8"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xed\xa0\x80\"}]}", "",
         "UTF-8"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xc0\xaf\"}]}", "",
         "UTF-8"},
        {SERVE_OPENAI_CHAT, "{\"model\":\"m\"}", "messages", "required"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[]}", "messages", "at least one"},
        {SERVE_OPENAI_CHAT, "{\"messages\":{}}", "messages", "expected an array"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[1]}", "messages[0]", "expected an object"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", "messages[0].role", "required"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"role\":\"god\",\"content\":\"x\"}]}",
         "messages[0].role", "god"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}",
         "messages[0].content", "expected a string"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\"}]}", "messages[0].content",
         "required"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"colour\":1}]}",
         "messages[0]", "colour"},
        {SERVE_OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
         "messages[0].content[0]", "image_url"},
        {SERVE_OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temprature\":1}", "temprature",
         "unrecognized"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"model\":7}",
         "model", "expected a string"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"model\":\"\"}",
         "model", "empty"},
        {SERVE_OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"1\"}",
         "temperature", "number"},
        {SERVE_OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":2.5}",
         "temperature", "range"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":-0.1}",
         "top_p", "range"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":0}", "n",
         "range"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":1.5}", "n",
         "integer"},
        {SERVE_OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", "max_tokens",
         "at least 1"},
        {SERVE_OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":-1}", "max_tokens",
         "at least 1"},
        {SERVE_OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1e12}", "max_tokens",
         "too large"},
        {SERVE_OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":\"9\"}",
         "max_tokens", "integer"},
        {SERVE_OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_completion_tokens\":0}",
         "max_completion_tokens", "at least 1"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":1}",
         "stream", "true or false"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[1]}",
         "stop", "expected a string"},
        {SERVE_OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"1\",\"2\",\"3\",\"4\","
         "\"5\","
         "\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}",
         "stop", "at most"},
        {SERVE_OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":"
         "\"yaml\"}}",
         "response_format.type", "yaml"},
        {SERVE_OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":"
         "\"json_schema\"}}",
         "response_format.json_schema", "schema"},
        {SERVE_OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":"
         "\"json_schema\","
         "\"json_schema\":{\"name\":\"x\"}}}",
         "response_format.json_schema.schema", "required"},
        {SERVE_OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true}", "logprobs",
         "not supported"},
        {SERVE_OPENAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{}]}",
         "tools", "not supported"},
        {SERVE_OPENAI_CHAT,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"messages\":[]}", "messages",
         "duplicate"},
        {SERVE_OPENAI_COMPLETION, "{}", "prompt", "required"},
        {SERVE_OPENAI_COMPLETION, "{\"prompt\":[]}", "prompt", "empty"},
        {SERVE_OPENAI_COMPLETION, "{\"prompt\":\"x\",\"echo\":true}", "echo", "not supported"},
        {SERVE_OPENAI_COMPLETION, "{\"prompt\":\"x\",\"suffix\":\"y\"}", "suffix", "not supported"},
        {SERVE_OPENAI_COMPLETION, "{\"prompt\":\"x\",\"messages\":[]}", "messages", "unrecognized"},
        {SERVE_OLLAMA_CHAT, "{\"messages\":[]}", "model", "required"},
        {SERVE_OLLAMA_CHAT, "{\"model\":\"m\",\"options\":[]}", "options", "object"},
        {SERVE_OLLAMA_CHAT, "{\"model\":\"m\",\"options\":{\"num_predict\":0}}",
         "options.num_predict", "positive"},
        {SERVE_OLLAMA_CHAT, "{\"model\":\"m\",\"options\":{\"temperature\":\"hot\"}}",
         "options.temperature", "number"},
        {SERVE_OLLAMA_CHAT, "{\"model\":\"m\",\"format\":\"xml\"}", "format", "xml"},
        {SERVE_OLLAMA_CHAT, "{\"model\":\"m\",\"keep_alive\":\"soon\"}", "keep_alive", "duration"},
        {SERVE_OLLAMA_CHAT, "{\"model\":\"m\",\"keep_alive\":true}", "keep_alive", "duration"},
        {SERVE_OLLAMA_CHAT,
         "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"images\":[\"AAAA\"]"
         "}]}",
         "messages[0].images", "not supported"},
        {SERVE_OLLAMA_GENERATE, "{\"model\":\"m\",\"context\":[1,\"a\"]}", "context[1]", "integer"},
        {SERVE_OLLAMA_GENERATE, "{\"model\":\"m\",\"template\":\"{{ .Prompt }}\"}", "template",
         "not supported"},
        {SERVE_OLLAMA_GENERATE, "{\"model\":\"m\",\"max_tokens\":5}", "max_tokens", "unrecognized"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const bad_case *c = &cases[i];
        serve_req r;
        char param[128] = "unset";
        qf_err err = {0};
        qf_status st = parse(c->api, c->body, &r, param, &err);
        ASSERT_MSG(st != QF_OK, "case %zu accepted: %s", i, c->body);
        ASSERT_MSG(!strcmp(param, c->param), "case %zu: param '%s', want '%s'", i, param, c->param);
        ASSERT_MSG(strstr(err.msg, c->needle) != NULL, "case %zu: message '%s' lacks '%s'", i,
                   err.msg, c->needle);
        ASSERT(r.model == NULL && r.msgs == NULL); /* deinitialised on failure */
    }
}

static void test_utf8(void) {
    ASSERT_EQ_INT(serve_utf8_check("abc", 3), 3);
    ASSERT_EQ_INT(serve_utf8_check("\xe2\x82\xac\xf0\x9f\x98\x80", 7), 7); /* euro, emoji */
    ASSERT_EQ_INT(serve_utf8_check("a\x80", 2), 1);                        /* lone continuation */
    ASSERT_EQ_INT(serve_utf8_check("\xc1\xbf", 2), 0);                     /* overlong */
    ASSERT_EQ_INT(serve_utf8_check("\xe0\x80\xaf", 3), 0);                 /* overlong 3-byte */
    ASSERT_EQ_INT(serve_utf8_check("\xed\xbf\xbf", 3), 0);                 /* surrogate */
    ASSERT_EQ_INT(serve_utf8_check("\xf4\x90\x80\x80", 4), 0);             /* > U+10FFFF */
    ASSERT_EQ_INT(serve_utf8_check("ab\xe2\x82", 4), 2);                   /* truncated */
    size_t n;
    char *c = serve_utf8_clean("a\xffz\xe2\x82", 5, &n);
    ASSERT(c);
    ASSERT_STR_EQ(c, "a\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd");
    ASSERT_EQ_INT(n, strlen(c));
    qf_free(c);
}

static void test_durations(void) {
    double s;
    ASSERT_EQ_INT(qf_models_parse_duration("5m", &s), QF_OK);
    ASSERT_NEAR(s, 300, 0);
    ASSERT_EQ_INT(qf_models_parse_duration("1h30m10s", &s), QF_OK);
    ASSERT_NEAR(s, 5410, 1e-9);
    ASSERT_EQ_INT(qf_models_parse_duration("500ms", &s), QF_OK);
    ASSERT_NEAR(s, 0.5, 1e-12);
    ASSERT_EQ_INT(qf_models_parse_duration("1.5h", &s), QF_OK);
    ASSERT_NEAR(s, 5400, 1e-9);
    ASSERT_EQ_INT(qf_models_parse_duration("-1", &s), QF_OK);
    ASSERT_NEAR(s, -1, 0);
    ASSERT_EQ_INT(qf_models_parse_duration("-1m", &s), QF_OK);
    ASSERT(s < 0);
    ASSERT_EQ_INT(qf_models_parse_duration("0", &s), QF_OK);
    ASSERT_NEAR(s, 0, 0);
    ASSERT_EQ_INT(qf_models_parse_duration("300", &s), QF_OK);
    ASSERT_NEAR(s, 300, 0);
    const char *bad[] = {"", "m", "5x", "5m3", "abc", "--1", "1e999h", "- 5m", "5 m"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ASSERT_MSG(qf_models_parse_duration(bad[i], &s) == QF_ERR_INVALID, "'%s' accepted", bad[i]);
    }
}

static const char *k_rich = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"}"
                            ",{\"role\":\"user\",\"content\":"
                            "[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}"
                            "]}],\"stop\":[\"x\",\"y\"],"
                            "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{"
                            "\"name\":\"n\",\"schema\":{\"type\":\"object\"}}},"
                            "\"max_tokens\":5,\"n\":2,\"seed\":1}";

static void test_alloc_failures(void) {
    bool done = false;
    for (long n = 0; n < 500 && !done; n++) {
        serve_req r;
        char param[128];
        qf_err err = {0};
        qf_mem_fail_after(n);
        qf_status st = serve_req_parse(SERVE_OPENAI_CHAT, k_rich, strlen(k_rich), &r, param,
                                       sizeof param, &err);
        qf_mem_fail_after(-1);
        if (st == QF_OK) {
            done = true;
            ASSERT_EQ_INT(r.n_msgs, 2);
            serve_req_deinit(&r);
        } else {
            ASSERT(err.msg[0]);
        }
    }
    ASSERT(done);
}

/* Random byte edits of valid bodies: anything may happen except a crash,
 * and a failure always carries a message. */
static void test_mutations(void) {
    unsigned seed = qf_test_seed();
    srand(seed);
    const char *bodies[] = {
        k_rich,
        "{\"model\":\"m\",\"prompt\":\"p\",\"options\":{\"num_predict\":3,\"stop\":[\"a\"]},"
        "\"keep_alive\":\"5m\",\"context\":[1,2],\"format\":{\"type\":\"object\"}}"};
    serve_api apis[] = {SERVE_OPENAI_CHAT, SERVE_OLLAMA_GENERATE};
    char buf[1024];
    for (int it = 0; it < 20000; it++) {
        int k = it % 2;
        size_t n = strlen(bodies[k]);
        memcpy(buf, bodies[k], n);
        int edits = 1 + rand() % 4;
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)rand() % n;
            int op = rand() % 3;
            if (op == 0)
                buf[at] = (char)(rand() % 256);
            else if (op == 1 && n > 1)
                memmove(buf + at, buf + at + 1, --n - at);
            else if (n + 1 < sizeof buf) {
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = "{}[]\",:0\\"[rand() % 9];
                n++;
            }
        }
        serve_req r;
        char param[128];
        qf_err err = {0};
        qf_status st = serve_req_parse(apis[k], buf, n, &r, param, sizeof param, &err);
        if (st == QF_OK)
            serve_req_deinit(&r);
        else
            ASSERT_MSG(err.msg[0] != 0, "iteration %d: error without a message", it);
    }
}

int main(void) {
    RUN_TEST(test_openai_chat_full);
    RUN_TEST(test_defaults);
    RUN_TEST(test_ollama);
    RUN_TEST(test_completion_prompts);
    RUN_TEST(test_bad_input);
    RUN_TEST(test_utf8);
    RUN_TEST(test_durations);
    RUN_TEST(test_alloc_failures);
    RUN_TEST(test_mutations);
    TEST_MAIN_END();
}
