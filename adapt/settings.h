/* adapt/settings.h - the settings of `lorahub adapt`, in one table.
 *
 * Each row is one key: the job-file key of lorahub-job(5), which is also
 * the long option of lorahub-adapt(1). The row says its type, its default
 * in each preset (NULL: no default), its range or choices, and where the
 * key is used (LH_SETTING_*). The options, job files, presets, the
 * checkpoint fingerprint and the report all read this table; the check of
 * a value (type, range, choice) is done once, by lh_settings_set.
 *
 * A settings object holds the values of one job: what the user gave (a
 * job file, options) and, after lh_settings_apply_preset, what the preset
 * filled in. adapt/job.h turns it into a search. */
#ifndef LH_SETTINGS_H
#define LH_SETTINGS_H

#include <stddef.h>

#include "lib/status.h"

typedef enum lh_setting_type {
    LH_SETTING_STRING,
    LH_SETTING_PATH,     /* relative to the job file's directory */
    LH_SETTING_INT,
    LH_SETTING_NUMBER,
    LH_SETTING_BOOL,     /* an option without a value; true/false, yes/no, 1/0 in a job */
    LH_SETTING_CHOICE,   /* one of a list of names */
    LH_SETTING_MODULES   /* a directory, a list file, "a,b,c", or a YAML list */
} lh_setting_type;

/* Where a key is used (bit flags of lh_setting_def.uses). */
enum {
    LH_SETTING_BACKEND = 1u << 0,     /* handed to the backend in lh_backend_opts.params */
    LH_SETTING_FINGERPRINT = 1u << 1, /* decides the trajectory: in the checkpoint fingerprint */
    LH_SETTING_REPORT = 1u << 2,      /* written in the report */
    LH_SETTING_SEARCH = 1u << 3       /* given by the user, it asks for a search (select) */
};

/* The presets, in the order of lh_setting_def.preset_default. */
enum { LH_PRESET_DEFAULT, LH_PRESET_PAPER, LH_PRESET_COUNT };
extern const char *const lh_preset_names[LH_PRESET_COUNT];

typedef struct lh_setting_def {
    const char *key;
    lh_setting_type type;
    const char *arg;                       /* the value's placeholder in usage: "DIR", "N" */
    const char *preset_default[LH_PRESET_COUNT]; /* value text, NULL: no default */
    long long int_min, int_max;            /* LH_SETTING_INT: inclusive */
    double num_min;                        /* LH_SETTING_NUMBER: lower limit */
    int num_min_open;                      /*   excluded (a value must be > num_min) */
    double num_max;                        /*   upper limit, inclusive, when > num_min */
    const char *const *choices;            /* LH_SETTING_CHOICE: NULL-terminated, or NULL ... */
    int (*is_choice)(const char *name);    /* ... a check by name (optimizers, methods) */
    const char *choices_hint;              /* said after an unknown name: "see --optimizer list" */
    unsigned uses;                         /* LH_SETTING_* */
} lh_setting_def;

/* The table, ending with a row whose key is NULL; and one row by key. */
const lh_setting_def *lh_setting_defs(void);
size_t lh_setting_count(void);
const lh_setting_def *lh_setting_find(const char *key);

typedef struct lh_settings lh_settings;

lh_status lh_settings_new(lh_settings **out, lh_error *err);
void lh_settings_free(lh_settings *s);

/* Set key from text (a path relative to base_dir when base_dir is given;
 * "-" is kept). Errors name the key: "budget '0': not an integer in
 * [1, 10000000]", "unknown optimizer 'x' (see --optimizer list)". */
lh_status lh_settings_set(lh_settings *s, const char *key, const char *value_text,
                          const char *base_dir, lh_error *err);
/* A list value (modules as a YAML list): paths [n], relative to base_dir. */
lh_status lh_settings_set_list(lh_settings *s, const char *key, const char *const *items,
                               size_t n, const char *base_dir, lh_error *err);
/* Every key of a job file (a YAML mapping of keys to values); an unknown
 * key is refused naming it. Paths are relative to the file's directory. */
lh_status lh_settings_load_job(lh_settings *s, const char *yaml_path, lh_error *err);
/* The keys of map (a YAML mapping already read), paths relative to dir;
 * keys named in skip (NULL-terminated, or NULL) are left to the caller. */
struct lh_json;
lh_status lh_settings_load_mapping(lh_settings *s, const struct lh_json *map, const char *dir,
                                   const char *const *skip, lh_error *err);
/* The directory of a file's path ("." for a bare name), malloc'd. */
char *lh_settings_dir_of(const char *path);
/* Copy into s every key over has set (options over a job file). */
lh_status lh_settings_override(lh_settings *s, const lh_settings *over, lh_error *err);
/* Fill what is not set from the preset the "preset" key names ("default"
 * when unset). A search setting the user gave turns a preset's select
 * into "search". */
lh_status lh_settings_apply_preset(lh_settings *s, lh_error *err);

/* Getters. is_set: a value is there (given or from the preset); given:
 * the user gave it. text: the value as set (resolved path), or NULL. */
int lh_settings_is_set(const lh_settings *s, const char *key);
int lh_settings_given(const lh_settings *s, const char *key);
const char *lh_settings_text(const lh_settings *s, const char *key);
/* The directory relative paths inside the value are resolved against
 * (the job file's), or NULL. */
const char *lh_settings_base_dir(const lh_settings *s, const char *key);
long long lh_settings_int(const lh_settings *s, const char *key, long long unset);
double lh_settings_number(const lh_settings *s, const char *key, double unset);
int lh_settings_bool(const lh_settings *s, const char *key);
/* A list value: items [*n], or NULL when the value is not a list. */
const char *const *lh_settings_list(const lh_settings *s, const char *key, size_t *n);

#endif
