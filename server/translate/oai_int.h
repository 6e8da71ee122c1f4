/* oai_int.h: helpers shared by the OpenAI translators; not part of the module's interface. */
#ifndef GH_OAI_INT_H
#define GH_OAI_INT_H

#include <stdint.h>
#include <time.h>

#include <json-c/json.h>

#include "buf.h"
#include "gh.h"
#include "oai.h"

#define GH_OAI_DEFAULT_MAX_TOKENS 4096
#define GH_OAI_MIN_THINKING 1024
#define GH_OAI_PARAM_MAX 160   /* room for one parameter path such as messages[3].content[1] */
#define GH_OAI_MAX_BLOCKS 4096 /* content blocks one streamed answer may open */
#define GH_OAI_JSON_DEPTH 128  /* nesting the parser accepts (json-c's default is 32) */

/* Where a request translation reports a client error: the status to answer, a message and the
 * offending parameter, all in the caller's buffers. */
typedef struct {
    int status;
    char *msg;
    size_t msgsz;
    char *param;
    size_t paramsz;
} gh_oai_err_t;

/* Token counts of one Anthropic answer, as read from usage objects. */
typedef struct {
    int64_t input;
    int64_t output;
    int64_t cache_read;
    int64_t cache_creation;
    int seen; /* some usage object was read */
} gh_oai_usage_t;

/* The Anthropic conversation being built from OpenAI messages or Responses input items. */
typedef struct {
    json_object *messages; /* array of {role, content: [blocks]} */
    json_object *system;   /* array of system text blocks, in order */
    int system_cache;      /* a system block has cache_control: keep the block form */
    size_t nblocks;        /* blocks added to messages so far */
} gh_oai_conv_t;

/* ---- common.c: clock, JSON, errors, conversation builder, usage ---- */
time_t gh_oai_now(void);
json_object *gh_oai_parse(const char *buf, size_t len);
int gh_oai_emit(json_object *o, gh_buf_t *out);
const char *gh_oai_json(json_object *o);
json_object *gh_oai_get(json_object *obj, const char *key);
const char *gh_oai_get_str(json_object *obj, const char *key);
int gh_oai_is_num(json_object *o);
int gh_oai_add(json_object *obj, const char *key, json_object *val);
int gh_oai_add_str(json_object *obj, const char *key, const char *s);
int gh_oai_add_strn(json_object *obj, const char *key, const char *s, size_t n);
int gh_oai_add_int(json_object *obj, const char *key, int64_t v);
int gh_oai_add_null(json_object *obj, const char *key);
int gh_oai_add_ref(json_object *obj, const char *key, json_object *val);
int gh_oai_push(json_object *arr, json_object *val);
int gh_oai_fail(gh_oai_err_t *e, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int gh_oai_oom(gh_oai_err_t *e);
const char *gh_oai_path(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int gh_oai_conv_init(gh_oai_conv_t *c);
void gh_oai_conv_free(gh_oai_conv_t *c);
int gh_oai_conv_add(gh_oai_conv_t *c, const char *role, json_object *block);
/* A converted content part b (NULL: its conversion failed) plus its cache_control → the turn. */
int gh_oai_conv_add_part(gh_oai_err_t *e, gh_oai_conv_t *c, const char *role, json_object *b,
                         json_object *cache);
int gh_oai_conv_system(gh_oai_conv_t *c, const char *text, size_t len, json_object *cache_control);
int gh_oai_conv_cache_last(gh_oai_conv_t *c, size_t mark, json_object *cache_control);
int gh_oai_conv_finish(gh_oai_conv_t *c, json_object *req, int json_object_mode, gh_oai_err_t *e);
void gh_oai_usage_read(gh_oai_usage_t *u, json_object *usage);
int64_t gh_oai_usage_prompt(const gh_oai_usage_t *u);
const char *gh_oai_finish_reason(const char *stop_reason);
const char *gh_oai_id_base(const char *id);
char *gh_oai_strdup(const char *s);

/* ---- content.c: content blocks, tools, sampling and thinking parameters ---- */
json_object *gh_oai_text_block(const char *text, size_t len, json_object *cache_control);
json_object *gh_oai_image_block(gh_oai_err_t *e, const char *url, const char *param);
json_object *gh_oai_file_block(gh_oai_err_t *e, json_object *file, const char *param);
int gh_oai_tool_input(gh_oai_err_t *e, json_object *arguments, const char *param,
                      json_object **input);
json_object *gh_oai_tool_use(const char *id, const char *name, json_object *input);
int gh_oai_tool_def(gh_oai_err_t *e, json_object *tools, json_object *fn, json_object *cache,
                    const char *param);
int gh_oai_tool_choice(gh_oai_err_t *e, json_object *req, json_object *choice,
                       json_object *parallel, int responses);
int gh_oai_max_tokens(gh_oai_err_t *e, json_object *v, const char *param, int64_t *out);
int gh_oai_sampling(gh_oai_err_t *e, json_object *body, json_object *req);
int gh_oai_stop(gh_oai_err_t *e, json_object *stop, json_object *req, const char *key);
int gh_oai_thinking(gh_oai_err_t *e, json_object *body, json_object *req, json_object *effort,
                    const char *effort_param, int64_t *max_tokens);
int gh_oai_output_schema(gh_oai_err_t *e, json_object *req, json_object *schema, const char *param);
int gh_oai_passthrough(json_object *body, json_object *req);

/* ---- streaming state, shared by chat_resp.c, resp_out.c and stream.c ---- */
enum { GH_OAI_BLK_NONE = 0, GH_OAI_BLK_TEXT, GH_OAI_BLK_TOOL, GH_OAI_BLK_THINKING };

/* What the translator remembers of one Anthropic content block. */
typedef struct {
    int type;          /* GH_OAI_BLK_*; NONE for blocks that are not translated */
    int open;          /* started and not yet stopped */
    int sent;          /* chat: some argument text of this tool call went out */
    int tool_index;    /* chat: index of the tool call among the answer's tool calls */
    int output_index;  /* Responses: index of the output item */
    int content_index; /* Responses: index of the part in its message item */
    char *item_id;     /* Responses: the output item's id */
    char *call_id;     /* tool_use id */
    char *name;        /* tool name */
    gh_buf_t acc;      /* Responses: text, arguments or thinking received so far */
    gh_buf_t sig;      /* Responses: thinking signature */
} gh_oai_block_t;

struct gh_oai_stream {
    gh_oai_kind_t kind;
    char *model;     /* model echoed to the client */
    int model_fixed; /* model came from the client, not from message_start */
    char *id;        /* Anthropic message id ("" until message_start) */
    time_t created;
    int include_usage;
    int started;     /* chat: role chunk sent; Responses: response.created sent */
    int closed;      /* the OpenAI stream is complete; later events are ignored */
    int finish_sent; /* chat: the finish_reason chunk went out */
    char stop_reason[40];
    gh_oai_usage_t usage;
    gh_oai_block_t *blocks;
    size_t nblocks;
    int ntools;
    /* Responses only */
    int64_t seq;           /* sequence_number of the next event */
    int noutput;           /* output items added so far */
    json_object *output;   /* finished output items, for the final response */
    json_object *msg_item; /* the open message item (its content grows) or NULL */
    int msg_index;         /* its output_index */
    int msg_parts;         /* parts it holds */
};

gh_oai_block_t *gh_oai_block_at(gh_oai_stream_t *s, json_object *ev);
int gh_oai_chat_event(gh_oai_stream_t *s, const char *type, json_object *ev, gh_buf_t *out);
int gh_oai_chat_finish(gh_oai_stream_t *s, int broken, const char *etype, const char *emsg,
                       gh_buf_t *out);
int gh_oai_resp_event(gh_oai_stream_t *s, const char *type, json_object *ev, gh_buf_t *out);
int gh_oai_resp_finish(gh_oai_stream_t *s, int broken, const char *etype, const char *emsg,
                       gh_buf_t *out);

/* ---- per-kind request and answer translators ---- */
int gh_oai_chat_request(json_object *body, const gh_oai_opts_t *opts, gh_oai_req_t *out,
                        json_object *req, gh_oai_err_t *e);
int gh_oai_chat_response(const char *model, json_object *msg, gh_buf_t *out);
int gh_oai_resp_request(json_object *body, const gh_oai_opts_t *opts, gh_oai_req_t *out,
                        json_object *req, gh_oai_err_t *e);
int gh_oai_resp_response(const char *model, json_object *msg, gh_buf_t *out);
json_object *gh_oai_resp_object(const char *msg_id, const char *model, time_t created,
                                const char *status, const char *stop_reason, json_object *output,
                                const gh_oai_usage_t *usage);
int gh_oai_complete_request(json_object *body, const gh_oai_opts_t *opts, gh_oai_req_t *out,
                            json_object *req, gh_oai_err_t *e);
int gh_oai_complete_response(const char *model, json_object *msg, gh_buf_t *out);
const char *gh_oai_error_type(int status, const char *anthropic_type, const char **code);

/* The tools array of Chat Completions (nested = 1) or Responses (nested = 0) → req.tools. */
int gh_oai_tools(gh_oai_err_t *e, int nested, json_object *req, json_object *tools);

#endif
