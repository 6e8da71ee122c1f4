/* test_beta.c: unit tests of the anthropic-beta header computation (detection, dedup, policy). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "gh.h"
#include "beta.h"
#include "jscan.h"

#define OUTSZ 1024

/* Runs gh_beta_header with the given policy and asserts its result and changed flag. */
static void expect_policy(const char *client, const char *body, unsigned flags,
                          const char *const *add, size_t nadd, const char *const *strip,
                          size_t nstrip, const char *want, int want_changed)
{
    char out[OUTSZ];
    int changed = -1;
    int rc = gh_beta_header(client, body, body != NULL ? strlen(body) : 0, flags, add, nadd, strip,
                            nstrip, out, sizeof out, &changed);
    gh_jspan_t spans[GH_BETA_NKEYS];

    if (rc != GH_OK || strcmp(out, want) != 0 || changed != want_changed)
        fail_msg("client [%s] body %s: rc %d out [%s] changed %d, want [%s] changed %d",
                 client != NULL ? client : "(null)", body != NULL ? body : "(null)", rc, out,
                 changed, want, want_changed);
    /* A valid body scanned by the caller gives the same answer. */
    if (body == NULL ||
        gh_jscan_object(body, strlen(body), gh_beta_keys, GH_BETA_NKEYS, spans, NULL) != GH_OK)
        return;
    changed = -1;
    rc = gh_beta_header_scanned(client, body, spans, flags, add, nadd, strip, nstrip, out,
                                sizeof out, &changed);
    if (rc != GH_OK || strcmp(out, want) != 0 || changed != want_changed)
        fail_msg("scanned: client [%s] body %s: rc %d out [%s] changed %d, want [%s] changed %d",
                 client != NULL ? client : "(null)", body, rc, out, changed, want, want_changed);
}

/* Runs gh_beta_header without policy and asserts its result and changed flag. */
static void expect(const char *client, const char *body, unsigned flags, const char *want,
                   int want_changed)
{
    expect_policy(client, body, flags, NULL, 0, NULL, 0, want, want_changed);
}

/* Asserts that body needs exactly the beta named want: added alone to an empty or missing header,
 * appended after the client's other betas (kept first, in order), and never duplicated when the
 * client already sent it (also padded with white space). */
static void expect_feature(const char *body, const char *want)
{
    char buf[OUTSZ];

    expect(NULL, body, 0, want, 1);
    expect("", body, 0, want, 1);
    snprintf(buf, sizeof buf, "zeta-2030-01-01,alpha-2020-01-01,%s", want);
    expect("zeta-2030-01-01,alpha-2020-01-01", body, 0, buf, 1);
    expect(buf, body, 0, buf, 0);
    snprintf(buf, sizeof buf, "alpha-2020-01-01, %s ,zeta-2030-01-01", want);
    expect(buf, body, 0, buf, 0);
    expect(want, body, 0, want, 0);
}

/* Asserts that body needs no beta at all. */
static void expect_none(const char *body)
{
    expect(NULL, body, 0, "", 0);
    expect("alpha-2020-01-01", body, 0, "alpha-2020-01-01", 0);
}

/* A plain request with nothing beta about it. */
static void test_plain_request(void **state)
{
    GH_UNUSED(state);
    expect_none("{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":10,"
                "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    expect_none("{}");
    expect_none("  {\"tools\":[],\"messages\":[],\"system\":\"be brief\"}  ");
}

/* computer_20250124 and computer_20251124 tool types, with any white space around the colon. */
static void test_computer_use(void **state)
{
    GH_UNUSED(state);
    expect_feature("{\"tools\":[{\"type\":\"computer_20250124\",\"name\":\"computer\","
                   "\"display_width_px\":1024,\"display_height_px\":768}]}",
                   GH_BETA_COMPUTER_USE_2501);
    expect_feature("{\"tools\":[{\"name\":\"computer\",\"type\" :\n\t \"computer_20251124\"}]}",
                   GH_BETA_COMPUTER_USE_2511);
    expect_feature("{\"tools\" : [ { \"name\" : \"x\" , \"input_schema\" : {} } , "
                   "{ \"type\"\r\n:\r\n\"computer_20250124\" } ]}",
                   GH_BETA_COMPUTER_USE_2501);
    /* Other tool types and near misses. */
    expect_none("{\"tools\":[{\"type\":\"computer_20241022\"},{\"type\":\"bash_20250124\"},"
                "{\"type\":\"computer_202501240\"},{\"type\":\"computer_2025012\"}]}");
}

/* output_format at the top level, or a tool with "strict": true. */
static void test_structured_outputs(void **state)
{
    GH_UNUSED(state);
    expect_feature("{\"output_format\":{\"type\":\"json_schema\",\"schema\":{\"type\":\"object\"}},"
                   "\"messages\":[]}",
                   GH_BETA_STRUCTURED_OUTPUTS);
    expect_feature("{\"tools\":[{\"name\":\"a\",\"input_schema\":{}},"
                   "{\"name\":\"b\",\"strict\" : true,\"input_schema\":{}}]}",
                   GH_BETA_STRUCTURED_OUTPUTS);
    expect_none("{\"output_format\":null,\"tools\":[{\"name\":\"b\",\"strict\":false}]}");
    /* A tool parameter called "strict" is not the tool's strict flag. */
    expect_none("{\"tools\":[{\"name\":\"grep\",\"input_schema\":{\"type\":\"object\","
                "\"properties\":{\"strict\":true,\"output_format\":{\"type\":\"string\"}}}}]}");
}

/* defer_loading, input_examples or allowed_callers on a tool. */
static void test_advanced_tool_use(void **state)
{
    GH_UNUSED(state);
    expect_feature("{\"tools\":[{\"name\":\"a\",\"defer_loading\":true}]}",
                   GH_BETA_ADVANCED_TOOL_USE);
    expect_feature("{\"tools\":[{\"name\":\"a\",\"input_examples\":[{\"q\":\"x\"}]}]}",
                   GH_BETA_ADVANCED_TOOL_USE);
    expect_feature(
        "{\"tools\":[{\"name\":\"a\",\"allowed_callers\":[\"code_execution_20250825\"]}]}",
        GH_BETA_ADVANCED_TOOL_USE);
    expect_none("{\"tools\":[{\"name\":\"a\",\"defer_loading\":null}]}");
    expect_none("{\"tools\":[{\"name\":\"a\",\"input_schema\":{\"properties\":{"
                "\"defer_loading\":{\"type\":\"boolean\"},\"allowed_callers\":{}}}}]}");
}

/* mcp_servers at the top level. */
static void test_mcp_client(void **state)
{
    GH_UNUSED(state);
    expect_feature("{\"mcp_servers\":[{\"type\":\"url\",\"url\":\"https://mcp.example.com/sse\","
                   "\"name\":\"example\"}],\"messages\":[]}",
                   GH_BETA_MCP_CLIENT);
    expect_none("{\"mcp_servers\":null}");
    expect_none("{\"metadata\":{\"mcp_servers\":[1]}}");
}

/* A cache_control object with a scope, in system, messages (also nested), tools or top level. */
static void test_prompt_caching_scope(void **state)
{
    GH_UNUSED(state);
    expect_feature("{\"system\":[{\"type\":\"text\",\"text\":\"x\","
                   "\"cache_control\":{\"type\":\"ephemeral\",\"scope\":\"global\"}}]}",
                   GH_BETA_PROMPT_CACHING_SCOPE);
    expect_feature(
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\","
        "\"cache_control\" : { \"scope\" : \"global\" , \"type\":\"ephemeral\"}}]}]}",
        GH_BETA_PROMPT_CACHING_SCOPE);
    expect_feature("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
                   "\"tool_use_id\":\"t1\",\"content\":[{\"type\":\"text\",\"text\":\"r\","
                   "\"cache_control\":{\"type\":\"ephemeral\",\"scope\":\"global\"}}]}]}]}",
                   GH_BETA_PROMPT_CACHING_SCOPE);
    expect_feature("{\"tools\":[{\"name\":\"a\",\"input_schema\":{},"
                   "\"cache_control\":{\"type\":\"ephemeral\",\"scope\":\"global\"}}]}",
                   GH_BETA_PROMPT_CACHING_SCOPE);
    expect_feature("{\"cache_control\":{\"type\":\"ephemeral\",\"scope\":\"global\"}}",
                   GH_BETA_PROMPT_CACHING_SCOPE);
    /* cache_control without scope, or scope elsewhere. */
    expect_none(
        "{\"system\":[{\"type\":\"text\",\"text\":\"x\","
        "\"cache_control\":{\"type\":\"ephemeral\",\"ttl\":\"1h\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\","
        "\"scope\":\"global\",\"cache_control\":{\"type\":\"ephemeral\",\"scope\":null}}]}],"
        "\"tools\":[{\"name\":\"a\",\"scope\":\"x\",\"cache_control\":{\"type\":\"ephemeral\"}}]}");
}

/* A context_management edit whose type starts with "compact". */
static void test_compact(void **state)
{
    GH_UNUSED(state);
    expect_feature("{\"context_management\":{\"edits\":[{\"type\":\"compact_20260112\","
                   "\"trigger\":{\"type\":\"input_tokens\",\"value\":100000}}]}}",
                   GH_BETA_COMPACT);
}

/* A context_management edit whose type starts with "clear_". */
static void test_context_management(void **state)
{
    GH_UNUSED(state);
    expect_feature("{\"context_management\":{\"edits\":[{\"type\":\"clear_tool_uses_20250919\"}]}}",
                   GH_BETA_CONTEXT_MANAGEMENT);
    expect_feature("{\"context_management\":{\"edits\":[{\"keep\":\"all\",\"type\":"
                   "\"clear_thinking_20251015\"}]}}",
                   GH_BETA_CONTEXT_MANAGEMENT);
    expect_none("{\"context_management\":{\"edits\":[]}}");
    expect_none("{\"context_management\":{\"edits\":[{\"type\":\"other\"},1,\"clear_x\"]}}");
    expect_none("{\"context_management\":{\"notes\":[{\"type\":\"clear_thinking_20251015\"}]}}");
    /* Both kinds of edit need both betas. */
    expect(NULL,
           "{\"context_management\":{\"edits\":[{\"type\":\"clear_thinking_20251015\"},"
           "{\"type\":\"compact_20260112\"}]}}",
           0, GH_BETA_COMPACT "," GH_BETA_CONTEXT_MANAGEMENT, 1);
}

/* A file_id or a {"type":"file"} source in messages. */
static void test_files_in_messages(void **state)
{
    GH_UNUSED(state);
    expect_feature("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\","
                   "\"source\":{\"type\":\"file\",\"file_id\":\"file_011CNha8iCJcU1wXNR6q4V8w\"}},"
                   "{\"type\":\"text\",\"text\":\"summarise\"}]}]}",
                   GH_BETA_FILES_API);
    expect_feature("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\","
                   "\"source\":{\"type\":\"file\"}}]}]}",
                   GH_BETA_FILES_API);
    expect_feature("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"container_upload\","
                   "\"file_id\":\"file_1\"}]}]}",
                   GH_BETA_FILES_API);
    expect_none(
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\","
        "\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"AA==\"}}]}],"
        "\"system\":[{\"type\":\"text\",\"text\":\"x\",\"file_id\":\"f\"}]}");
}

/* The files endpoint flag adds the files beta whatever the body; a multipart body is not read. */
static void test_files_endpoint(void **state)
{
    char out[OUTSZ];
    int changed = -1;
    const char *multipart =
        "--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx\r\n--b--";

    GH_UNUSED(state);
    expect(NULL, NULL, GH_BETA_FILES_ENDPOINT, GH_BETA_FILES_API, 1);
    expect("", NULL, GH_BETA_FILES_ENDPOINT, GH_BETA_FILES_API, 1);
    expect("skills-2025-10-02", NULL, GH_BETA_FILES_ENDPOINT,
           "skills-2025-10-02," GH_BETA_FILES_API, 1);
    expect(GH_BETA_FILES_API, NULL, GH_BETA_FILES_ENDPOINT, GH_BETA_FILES_API, 0);
    expect("a, files-api-2025-04-14", NULL, GH_BETA_FILES_ENDPOINT, "a, files-api-2025-04-14", 0);
    expect(NULL, multipart, GH_BETA_FILES_ENDPOINT, GH_BETA_FILES_API, 1);
    /* A non-NULL but empty body counts as no body. */
    assert_int_equal(gh_beta_header("a", "", 0, GH_BETA_FILES_ENDPOINT, NULL, 0, NULL, 0, out,
                                    sizeof out, &changed),
                     GH_OK);
    assert_string_equal(out, "a," GH_BETA_FILES_API);
    assert_int_equal(changed, 1);
    assert_int_equal(gh_beta_header("a", "", 0, 0, NULL, 0, NULL, 0, out, sizeof out, &changed),
                     GH_OK);
    assert_string_equal(out, "a");
    assert_int_equal(changed, 0);
}

/* "speed": "fast" at the top level. */
static void test_fast_mode(void **state)
{
    GH_UNUSED(state);
    expect_feature("{\"model\":\"claude-opus-4-6\",\"speed\":\"fast\",\"messages\":[]}",
                   GH_BETA_FAST_MODE);
    expect_feature("{\"speed\" : \"f\\u0061st\"}", GH_BETA_FAST_MODE);
    expect_none("{\"speed\":\"standard\"}");
    expect_none("{\"speed\":\"faster\"}");
    expect_none("{\"metadata\":{\"speed\":\"fast\"}}");
}

/* Passthrough-only betas are forwarded but never added, even when the body uses the feature. */
static void test_passthrough_only(void **state)
{
    const char *body =
        "{\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":2048},"
        "\"container\":{\"skills\":[{\"type\":\"anthropic\",\"skill_id\":\"pptx\"}]},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    GH_UNUSED(state);
    expect_none(body);
    expect("skills-2025-10-02,context-1m-2025-08-07,redact-thinking-2026-02-12,"
           "interleaved-thinking-2025-05-14",
           body, 0,
           "skills-2025-10-02,context-1m-2025-08-07,redact-thinking-2026-02-12,"
           "interleaved-thinking-2025-05-14",
           0);
}

/* Many features at once: the client's betas first, in order, then the missing ones in table
 * order, each once. */
static void test_combination(void **state)
{
    const char *body =
        "{\"model\":\"m\",\"speed\":\"fast\",\"mcp_servers\":[],"
        "\"output_format\":{\"type\":\"json_schema\"},"
        "\"context_management\":{\"edits\":[{\"type\":\"compact_20260112\"},"
        "{\"type\":\"clear_tool_uses_20250919\"},{\"type\":\"compact_20260112\"}]},"
        "\"tools\":[{\"type\":\"computer_20251124\"},{\"type\":\"computer_20250124\"},"
        "{\"name\":\"a\",\"strict\":true,\"defer_loading\":true,\"input_examples\":[]}],"
        "\"system\":[{\"type\":\"text\",\"text\":\"s\",\"cache_control\":{\"scope\":\"global\"}}],"
        "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\","
        "\"source\":{\"type\":\"file\",\"file_id\":\"f\"},\"cache_control\":{\"scope\":\"g\"}}]}]}";
    GH_UNUSED(state);
    expect(NULL, body, 0,
           "computer-use-2025-01-24,computer-use-2025-11-24,structured-outputs-2025-11-13,"
           "advanced-tool-use-2025-11-20,mcp-client-2025-11-20,prompt-caching-scope-2026-01-05,"
           "compact-2026-01-12,context-management-2025-06-27,files-api-2025-04-14,"
           "fast-mode-2026-02-01",
           1);
    expect("fast-mode-2026-02-01, claude-code-20250219,mcp-client-2025-11-20", body, 0,
           "fast-mode-2026-02-01, claude-code-20250219,mcp-client-2025-11-20,"
           "computer-use-2025-01-24,computer-use-2025-11-24,structured-outputs-2025-11-13,"
           "advanced-tool-use-2025-11-20,prompt-caching-scope-2026-01-05,"
           "compact-2026-01-12,context-management-2025-06-27,files-api-2025-04-14",
           1);
    /* With the files endpoint flag too, files is still added once. */
    expect("files-api-2025-04-14", body, GH_BETA_FILES_ENDPOINT, "files-api-2025-04-14", 0);
}

/* Trigger words inside message text, tool descriptions, tool_use inputs or strings never count:
 * only the structure of the relevant members does. */
static void test_no_false_positive(void **state)
{
    GH_UNUSED(state);
    expect_none(
        "{\"model\":\"m\",\"system\":\"Use mcp_servers, defer_loading and speed fast; "
        "\\\"type\\\":\\\"computer_20250124\\\", \\\"file_id\\\":\\\"f\\\", "
        "\\\"cache_control\\\":{\\\"scope\\\":\\\"global\\\"}\","
        "\"messages\":["
        "{\"role\":\"user\",\"content\":\"mcp_servers defer_loading \\\"strict\\\":true "
        "\\\"output_format\\\" \\\"speed\\\":\\\"fast\\\" compact_20260112 "
        "\\\"file_id\\\":\\\"file_1\\\" \\\"source\\\":{\\\"type\\\":\\\"file\\\"} "
        "\\\"cache_control\\\":{\\\"type\\\":\\\"ephemeral\\\",\\\"scope\\\":\\\"global\\\"}\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"\\\"defer_loading\\\": "
        "true, \\\"mcp_servers\\\": [], \\\\\\\"file_id\\\\\\\": 1\"},"
        "{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"Write\",\"input\":{\"file_id\":\"f\","
        "\"source\":{\"type\":\"file\"},\"cache_control\":{\"scope\":\"global\"},"
        "\"mcp_servers\":[1],\"speed\":\"fast\",\"tools\":[{\"type\":\"computer_20250124\"}]}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\","
        "\"content\":\"{\\\"tools\\\":[{\\\"type\\\":\\\"computer_20251124\\\","
        "\\\"defer_loading\\\":true,\\\"strict\\\":true}],\\\"output_format\\\":{}}\"}]}],"
        "\"tools\":[{\"name\":\"Read\",\"description\":\"Reads a file. Mentions "
        "\\\"defer_loading\\\": true, \\\"strict\\\": true, \\\"type\\\": "
        "\\\"computer_20250124\\\" "
        "and mcp_servers.\",\"input_schema\":{\"type\":\"object\",\"properties\":{"
        "\"type\":{\"type\":\"string\",\"enum\":[\"computer_20250124\"]},"
        "\"input_examples\":{\"type\":\"array\"},"
        "\"cache_control\":{\"type\":\"object\",\"properties\":{\"scope\":{}}}}}}],"
        "\"metadata\":{\"user_id\":\"output_format mcp_servers\"}}");
}

/* Top-level keys and string values spelled with escapes are decoded like the API does. Nested
 * keys are found by their plain spelling, the one every SDK writes. */
static void test_escaped_spelling(void **state)
{
    GH_UNUSED(state);
    expect_feature("{\"mcp_serv\\u0065rs\":[]}", GH_BETA_MCP_CLIENT);
    expect_feature("{\"outp\\u0075t_format\":{}}", GH_BETA_STRUCTURED_OUTPUTS);
    expect_feature("{\"context_management\":{\"\\u0065dits\":[{\"type\":\"\\u0063lear_x\"}]}}",
                   GH_BETA_CONTEXT_MANAGEMENT);
    expect_feature("{\"tools\":[{\"type\":\"computer_2025\\u0031124\"}]}",
                   GH_BETA_COMPUTER_USE_2511);
    expect_feature("{\"messages\":[{\"content\":[{\"source\":{\"type\":\"fil\\u0065\"},"
                   "\"file_id\":1}]}]}",
                   GH_BETA_FILES_API);
    /* Long values are compared as far as needed, escapes included. */
    char body[1024], pad[700];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    snprintf(body, sizeof body,
             "{\"context_management\":{\"edits\":[{\"type\":\"comp\\u0061ct\\n%s\"}]}}", pad);
    expect_feature(body, GH_BETA_COMPACT);
    snprintf(body, sizeof body, "{\"speed\":\"fast\\n%s\"}", pad);
    expect_none(body);
    /* An escape for a non-ASCII character never equals ASCII text. */
    expect_none("{\"speed\":\"f\\u0161st\"}");
    expect_none("{\"speed\":\"fas\\u0074\\ud83d\\ude00\"}");
    expect_none("{\"tools\":[{\"type\":\"computer_2025112\\u00b4\"}]}");
}

/* strip removes a beta the client sent, one the body needs and one add asks for. */
static void test_strip_policy(void **state)
{
    static const char *const strip[] = {"prompt-caching-scope-2026-01-05",
                                        " context-1m-2025-08-07 ", NULL, ""};
    static const char *const add[] = {"context-1m-2025-08-07", "extra-2030-01-01"};
    const char *body = "{\"system\":[{\"type\":\"text\",\"text\":\"x\","
                       "\"cache_control\":{\"scope\":\"global\"}}],\"speed\":\"fast\"}";
    GH_UNUSED(state);
    /* The client's copy goes, the others stay in order. */
    expect_policy("a-1, prompt-caching-scope-2026-01-05 ,b-2", NULL, 0, NULL, 0, strip, 4,
                  "a-1,b-2", 1);
    expect_policy("prompt-caching-scope-2026-01-05", NULL, 0, NULL, 0, strip, 4, "", 1);
    expect_policy("context-1m-2025-08-07,a-1,context-1m-2025-08-07", NULL, 0, NULL, 0, strip, 4,
                  "a-1", 1);
    /* The body needs it, but the upstream refuses it. */
    expect_policy(NULL, body, 0, NULL, 0, strip, 4, GH_BETA_FAST_MODE, 1);
    expect_policy("a-1,prompt-caching-scope-2026-01-05", body, 0, add, 2, strip, 4,
                  "a-1,fast-mode-2026-02-01,extra-2030-01-01", 1);
    /* Nothing to strip: verbatim, unchanged. */
    expect_policy("a-1 , b-2", NULL, 0, NULL, 0, strip, 4, "a-1 , b-2", 0);
    /* Comparison is case-sensitive: another spelling is another token. */
    expect_policy("Context-1M-2025-08-07", NULL, 0, NULL, 0, strip, 4, "Context-1M-2025-08-07", 0);
}

/* add appends betas when missing, once, after the body's. */
static void test_add_policy(void **state)
{
    static const char *const add[] = {
        "extra-2030-01-01", NULL, "  ", " files-api-2025-04-14", "extra-2030-01-01",
        "more-2031-01-01 "};
    GH_UNUSED(state);
    expect_policy(NULL, NULL, 0, add, 6, NULL, 0,
                  "extra-2030-01-01,files-api-2025-04-14,more-2031-01-01", 1);
    expect_policy("more-2031-01-01", NULL, GH_BETA_FILES_ENDPOINT, add, 6, NULL, 0,
                  "more-2031-01-01,files-api-2025-04-14,extra-2030-01-01", 1);
    expect_policy("extra-2030-01-01,files-api-2025-04-14,more-2031-01-01", "{\"speed\":\"fast\"}",
                  0, add, 6, NULL, 0,
                  "extra-2030-01-01,files-api-2025-04-14,more-2031-01-01,fast-mode-2026-02-01", 1);
    expect_policy("extra-2030-01-01, files-api-2025-04-14,more-2031-01-01", "{}", 0, add, 6, NULL,
                  0, "extra-2030-01-01, files-api-2025-04-14,more-2031-01-01", 0);
}

/* changed is 0 exactly when out is the client's header byte for byte. */
static void test_changed_flag(void **state)
{
    char out[OUTSZ];
    int changed = -1;
    GH_UNUSED(state);
    /* White space and empty tokens of an unchanged header survive. */
    expect(" a-1 ,, b-2 ", "{}", 0, " a-1 ,, b-2 ", 0);
    /* Appending drops trailing separators only. */
    expect(" a-1 ,, b-2 , ", "{\"speed\":\"fast\"}", 0, " a-1 ,, b-2,fast-mode-2026-02-01", 1);
    expect(" , ", "{\"speed\":\"fast\"}", 0, "fast-mode-2026-02-01", 1);
    expect(NULL, NULL, 0, "", 0);
    /* changed may be NULL. */
    assert_int_equal(
        gh_beta_header("a", "{\"speed\":\"fast\"}", 16, 0, NULL, 0, NULL, 0, out, sizeof out, NULL),
        GH_OK);
    assert_string_equal(out, "a,fast-mode-2026-02-01");
    assert_int_equal(gh_beta_header("a", NULL, 0, 0, NULL, 0, NULL, 0, out, sizeof out, &changed),
                     GH_OK);
    assert_int_equal(changed, 0);
}

/* out must hold the whole value and its NUL; otherwise GH_ERR and an empty out. */
static void test_out_too_small(void **state)
{
    const char *body = "{\"speed\":\"fast\"}";
    const char *want = "abc,fast-mode-2026-02-01";
    size_t need = strlen(want) + 1;
    char out[64];
    int changed = -1;
    GH_UNUSED(state);

    assert_int_equal(
        gh_beta_header("abc", body, strlen(body), 0, NULL, 0, NULL, 0, out, need, &changed), GH_OK);
    assert_string_equal(out, want);
    assert_int_equal(changed, 1);
    for (size_t sz = 1; sz < need; sz++) {
        memset(out, 'x', sizeof out);
        changed = -1;
        assert_int_equal(
            gh_beta_header("abc", body, strlen(body), 0, NULL, 0, NULL, 0, out, sz, &changed),
            GH_ERR);
        assert_int_equal(out[0], '\0');
        assert_int_equal(out[sz], 'x');
        assert_int_equal(changed, 0);
    }
    /* Unchanged headers must fit too. */
    assert_int_equal(gh_beta_header("abc", NULL, 0, 0, NULL, 0, NULL, 0, out, 3, &changed), GH_ERR);
    assert_int_equal(gh_beta_header("abc", NULL, 0, 0, NULL, 0, NULL, 0, out, 4, &changed), GH_OK);
    assert_string_equal(out, "abc");
    assert_int_equal(gh_beta_header("", NULL, 0, 0, NULL, 0, NULL, 0, out, 1, &changed), GH_OK);
    assert_string_equal(out, "");
    assert_int_equal(gh_beta_header("", NULL, 0, 0, NULL, 0, NULL, 0, out, 0, &changed), GH_ERR);
    assert_int_equal(gh_beta_header("", NULL, 0, 0, NULL, 0, NULL, 0, NULL, 8, &changed), GH_ERR);
    /* Invalid bodies too. */
    assert_int_equal(gh_beta_header("abc", "{", 1, 0, NULL, 0, NULL, 0, out, 3, &changed), GH_ERR);
}

/* A body that is not one valid JSON object leaves the client's header as it is, policy included. */
static void test_invalid_json(void **state)
{
    static const char *const add[] = {"extra-2030-01-01"};
    static const char *const strip[] = {"a-1"};
    static const char *const bodies[] = {
        "{",
        "{\"speed\":\"fast\"",
        "{\"speed\":\"fast\",}",
        "[{\"speed\":\"fast\"}]",
        "{\"speed\":\"fast\"} x",
        "{\"tools\":[{\"type\":\"computer_20250124\"]}",
        "{\"mcp_servers\":[1,]}",
        "\"mcp_servers\"",
        "null",
    };
    GH_UNUSED(state);
    for (size_t k = 0; k < GH_ARRAY_LEN(bodies); k++) {
        expect("a-1, b-2", bodies[k], 0, "a-1, b-2", 0);
        expect(NULL, bodies[k], 0, "", 0);
        expect_policy("a-1, b-2", bodies[k], 0, add, 1, strip, 1, "a-1, b-2", 0);
    }
    /* Length is honoured: the valid prefix counts, not the bytes after it. */
    char out[OUTSZ];
    int changed = -1;
    const char *body = "{\"speed\":\"fast\"}{";
    assert_int_equal(
        gh_beta_header("a", body, strlen(body) - 1, 0, NULL, 0, NULL, 0, out, sizeof out, &changed),
        GH_OK);
    assert_string_equal(out, "a,fast-mode-2026-02-01");
    assert_int_equal(
        gh_beta_header("a", body, strlen(body), 0, NULL, 0, NULL, 0, out, sizeof out, &changed),
        GH_OK);
    assert_string_equal(out, "a");
    assert_int_equal(changed, 0);
}

/* NULL and empty client headers behave alike. */
static void test_empty_client(void **state)
{
    GH_UNUSED(state);
    expect(NULL, "{}", 0, "", 0);
    expect("", "{}", 0, "", 0);
    expect(NULL, "{\"mcp_servers\":[]}", 0, GH_BETA_MCP_CLIENT, 1);
    expect("", "{\"mcp_servers\":[]}", 0, GH_BETA_MCP_CLIENT, 1);
    expect("  ", "{\"mcp_servers\":[]}", 0, GH_BETA_MCP_CLIENT, 1);
}

/* A growable string for building large bodies. */
typedef struct {
    char *p;
    size_t len;
    size_t cap;
} sb_t;

/* Appends s[0..n) to b. */
static void sb_put(sb_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Appends the NUL-terminated s to b. */
static void sb_puts(sb_t *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* Appends about n bytes of JSON string content (no quotes) that looks like prompt and code text,
 * escapes and trigger words included, chosen by a small generator seeded with seed. */
static void sb_text(sb_t *b, size_t n, unsigned seed)
{
    static const char *const words[] = {
        "the ",
        "file ",
        "\\\"quoted\\\" ",
        "int main(void)\\n{\\n",
        "    return 0;\\n}\\n",
        "C:\\\\path ",
        "mcp_servers ",
        "\\\"defer_loading\\\": true ",
        "\\\"file_id\\\":\\\"file_1\\\" ",
        "\\\"scope\\\" ",
        "tool ",
        "and ",
        "\\u00e9t\\u00e9 ",
        "{\\\"type\\\":\\\"computer_20250124\\\"} ",
        "\\t",
        "Read the code carefully before you change anything. ",
        "static size_t skip_ws(const char *s, size_t i, size_t n) ",
        "Use the Edit tool for small changes and keep the style of the file. ",
        "This is a longer sentence of plain prose without any escapes at all, as most text is. ",
    };
    size_t start = b->len;
    unsigned r = seed * 2654435761u + 1u;
    while (b->len - start < n) {
        r = r * 1103515245u + 12345u;
        sb_puts(b, words[(r >> 16) % GH_ARRAY_LEN(words)]);
    }
}

/* Builds a Claude-Code-like request of at least size bytes: a long cached system prompt, 24 tools
 * with descriptions and schemas, and a history of text, tool_use and tool_result turns. With traps
 * set, tool_use inputs hold file_id and cache_control.scope keys (which must not count). extra is
 * spliced into the last user message's content blocks (or "" for none). */
static char *claude_code_body(size_t size, int traps, const char *extra, size_t *len)
{
    sb_t b = {NULL, 0, 0};
    char tmp[256];

    sb_puts(&b, "{\"model\":\"claude-sonnet-4-5-20250929\",\"max_tokens\":32000,\"stream\":true,"
                "\"metadata\":{\"user_id\":\"user_abc_account__session_123\"},"
                "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":31999},"
                "\"system\":[{\"type\":\"text\",\"text\":\"You are Claude Code.\","
                "\"cache_control\":{\"type\":\"ephemeral\"}},{\"type\":\"text\",\"text\":\"");
    sb_text(&b, 40000, 1);
    sb_puts(&b, "\",\"cache_control\":{\"type\":\"ephemeral\"}}],\"tools\":[");
    for (unsigned t = 0; t < 24; t++) {
        snprintf(tmp, sizeof tmp, "%s{\"name\":\"Tool%u\",\"description\":\"", t ? "," : "", t);
        sb_puts(&b, tmp);
        sb_text(&b, 2500, 100 + t);
        sb_puts(&b, "\",\"input_schema\":{\"type\":\"object\",\"properties\":{"
                    "\"file_path\":{\"type\":\"string\",\"description\":\"The absolute path\"},"
                    "\"strict\":{\"type\":\"boolean\",\"default\":true},"
                    "\"scope\":{\"type\":\"string\",\"enum\":[\"a\",\"b\"]},"
                    "\"limit\":{\"type\":\"number\",\"minimum\":0,\"maximum\":1e9},"
                    "\"edits\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
                    "\"old_string\":{\"type\":\"string\"},\"new_string\":{\"type\":\"string\"}},"
                    "\"required\":[\"old_string\",\"new_string\"],"
                    "\"additionalProperties\":false}}},\"required\":[\"file_path\"],"
                    "\"additionalProperties\":false,"
                    "\"$schema\":\"http://json-schema.org/draft-07/schema#\"}}");
    }
    sb_puts(&b, "],\"messages\":[");
    for (unsigned m = 0; b.len < size; m++) {
        snprintf(tmp, sizeof tmp,
                 "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"step %u: ", m);
        sb_puts(&b, tmp);
        sb_text(&b, 300, 1000 + m);
        snprintf(tmp, sizeof tmp,
                 "\"}]},{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\","
                 "\"thinking\":\"let me look\",\"signature\":\"EqQBCkYIBRgCKkD%u\"},"
                 "{\"type\":\"tool_use\",\"id\":\"toolu_%u\",\"name\":\"Read\",\"input\":{",
                 m, m);
        sb_puts(&b, tmp);
        sb_puts(&b, traps ? "\"file_path\":\"/src/main.c\",\"file_id\":\"x\",\"cache_control\":"
                            "{\"scope\":\"global\"}}}]},"
                          : "\"file_path\":\"/src/main.c\"}}]},");
        snprintf(tmp, sizeof tmp,
                 "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":"
                 "\"toolu_%u\",\"content\":\"",
                 m);
        sb_puts(&b, tmp);
        sb_text(&b, 3000, 5000 + m);
        sb_puts(&b, "\"}]},");
    }
    sb_puts(&b, "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"go on\","
                "\"cache_control\":{\"type\":\"ephemeral\"}}");
    sb_puts(&b, extra);
    sb_puts(&b, "]}]}");
    *len = b.len;
    return b.p;
}

/* Returns the mean time in microseconds of one call on body: gh_beta_header, or with spans given
 * gh_beta_header_scanned. */
static double time_call(const char *client, const char *body, size_t len, const gh_jspan_t *spans)
{
    struct timespec t0, t1;
    char out[OUTSZ];
    int changed, iters = 200;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int k = 0; k < iters; k++) {
        int rc = spans != NULL ? gh_beta_header_scanned(client, body, spans, 0, NULL, 0, NULL, 0,
                                                        out, sizeof out, &changed)
                               : gh_beta_header(client, body, len, 0, NULL, 0, NULL, 0, out,
                                                sizeof out, &changed);
        assert_int_equal(rc, GH_OK);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) /
           iters;
}

/* 300 KB Claude-Code-like bodies: no false positive from their text, schemas and tool inputs, the
 * real features found wherever they sit, and the time per call printed (a plain body, where the
 * key search finds nothing, and one whose tool inputs force the structural walk). */
static void test_large_body(void **state)
{
    size_t len;
    char out[OUTSZ];
    int changed = -1;
    char *body;
    gh_jspan_t spans[GH_BETA_NKEYS];
    GH_UNUSED(state);

    for (int traps = 0; traps <= 1; traps++) {
        body = claude_code_body(300 * 1024, traps, "", &len);
        assert_true(len >= 300 * 1024);
        assert_int_equal(gh_beta_header("claude-code-20250219", body, len, 0, NULL, 0, NULL, 0, out,
                                        sizeof out, &changed),
                         GH_OK);
        assert_string_equal(out, "claude-code-20250219");
        assert_int_equal(changed, 0);
        assert_int_equal(gh_jscan_object(body, len, gh_beta_keys, GH_BETA_NKEYS, spans, NULL),
                         GH_OK);
        print_message("%zu-byte body%s: gh_beta_header %.1f us, gh_beta_header_scanned %.1f us "
                      "per call\n",
                      len, traps ? " (structural walk)" : "",
                      time_call("claude-code-20250219", body, len, NULL),
                      time_call("claude-code-20250219", body, len, spans));
        free(body);
    }

    /* The last block of the history carries a file source and a scoped cache_control. */
    body = claude_code_body(300 * 1024, 1,
                            ",{\"type\":\"document\",\"source\":{\"type\":\"file\",\"file_id\":"
                            "\"file_9\"},\"cache_control\":{\"type\":\"ephemeral\",\"scope\":"
                            "\"global\"}}",
                            &len);
    assert_int_equal(gh_beta_header("claude-code-20250219", body, len, 0, NULL, 0, NULL, 0, out,
                                    sizeof out, &changed),
                     GH_OK);
    assert_string_equal(out, "claude-code-20250219,prompt-caching-scope-2026-01-05,"
                             "files-api-2025-04-14");
    assert_int_equal(changed, 1);
    free(body);
}

/* The key search finds keys at every offset, across its 16-byte blocks and up to the end of the
 * member, and a string that merely equals a key never counts. */
static void test_key_offsets(void **state)
{
    char body[512], pad[80];
    GH_UNUSED(state);
    for (size_t k = 0; k < 70; k++) {
        memset(pad, 'x', k);
        pad[k] = '\0';
        snprintf(body, sizeof body,
                 "{\"messages\":[{\"content\":[{\"text\":\"%s\",\"file_id\":1}]}]}", pad);
        expect(NULL, body, 0, GH_BETA_FILES_API, 1);
        snprintf(
            body, sizeof body,
            "{\"messages\":[{\"content\":[{\"text\":\"%s\",\"source\":{\"type\":\"file\"}}]}]}",
            pad);
        expect(NULL, body, 0, GH_BETA_FILES_API, 1);
        snprintf(body, sizeof body,
                 "{\"system\":[{\"text\":\"%s\",\"cache_control\":{\"scope\":\"g\"}}],\"x\":1}",
                 pad);
        expect(NULL, body, 0, GH_BETA_PROMPT_CACHING_SCOPE, 1);
        snprintf(body, sizeof body,
                 "{\"tools\":[{\"description\":\"%s\",\"allowed_callers\":[]}],\"x\":1}", pad);
        expect(NULL, body, 0, GH_BETA_ADVANCED_TOOL_USE, 1);
        snprintf(body, sizeof body,
                 "{\"tools\":[{\"name\":\"%s\",\"type\":\"computer_20251124\"}]}", pad);
        expect(NULL, body, 0, GH_BETA_COMPUTER_USE_2511, 1);
        /* Whole strings equal to a key, as values or in arrays: looked at, not counted. */
        snprintf(body, sizeof body,
                 "{\"messages\":[{\"content\":[{\"text\":\"%s\"},\"file_id\",{\"t\":\"file\"},"
                 "{\"scope\":\"scope\"}]}],\"tools\":[{\"name\":\"strict\",\"x\":\"%s\","
                 "\"y\":[\"defer_loading\",{\"strict\":true}]}]}",
                 pad, pad);
        expect_none(body);
    }
}

/* Deep nesting within the scanner's limit is walked without trouble. */
static void test_deep_nesting(void **state)
{
    sb_t b = {NULL, 0, 0};
    GH_UNUSED(state);
    sb_puts(&b, "{\"messages\":");
    for (int k = 0; k < 250; k++)
        sb_puts(&b, "[");
    sb_puts(&b, "{\"cache_control\":{\"scope\":\"g\"}}");
    for (int k = 0; k < 250; k++)
        sb_puts(&b, "]");
    sb_puts(&b, "}");
    expect(NULL, b.p, 0, GH_BETA_PROMPT_CACHING_SCOPE, 1);
    free(b.p);
}

/* Runs the beta header tests. */
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_request),
        cmocka_unit_test(test_computer_use),
        cmocka_unit_test(test_structured_outputs),
        cmocka_unit_test(test_advanced_tool_use),
        cmocka_unit_test(test_mcp_client),
        cmocka_unit_test(test_prompt_caching_scope),
        cmocka_unit_test(test_compact),
        cmocka_unit_test(test_context_management),
        cmocka_unit_test(test_files_in_messages),
        cmocka_unit_test(test_files_endpoint),
        cmocka_unit_test(test_fast_mode),
        cmocka_unit_test(test_passthrough_only),
        cmocka_unit_test(test_combination),
        cmocka_unit_test(test_no_false_positive),
        cmocka_unit_test(test_escaped_spelling),
        cmocka_unit_test(test_strip_policy),
        cmocka_unit_test(test_add_policy),
        cmocka_unit_test(test_changed_flag),
        cmocka_unit_test(test_out_too_small),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_empty_client),
        cmocka_unit_test(test_large_body),
        cmocka_unit_test(test_key_offsets),
        cmocka_unit_test(test_deep_nesting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
