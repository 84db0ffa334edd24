-- Lineage store DDL, applied by magnet_dagster.store on first use (idempotent).
-- Every row carries its tool set (the Dagster partition key) and the Dagster run id,
-- plus the ids of the rows it was made from.

CREATE TABLE IF NOT EXISTS tool_sets (
    tool_set      VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    source_path   VARCHAR NOT NULL,
    content_hash  VARCHAR NOT NULL,
    executor      JSON,            -- how functions run: {"kind": "bfcl", "classes": [...]} / python / simulated
    options       JSON,            -- synthesis options from toolset.yaml
    created_at    TIMESTAMP DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS functions (
    function_id   VARCHAR NOT NULL,
    tool_set      VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    name          VARCHAR NOT NULL,
    description   VARCHAR,
    parameters    JSON NOT NULL,
    returns       JSON,
    category      VARCHAR,
    tool          VARCHAR,
    source_file   VARCHAR,
    executable    BOOLEAN
);

CREATE TABLE IF NOT EXISTS rejected_functions (
    tool_set      VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    name          VARCHAR,
    source_file   VARCHAR,
    rule          VARCHAR NOT NULL,
    reason        VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS graph_edges (
    edge_id       VARCHAR NOT NULL,
    tool_set      VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    source_id     VARCHAR NOT NULL,  -- functions.function_id
    target_id     VARCHAR NOT NULL,  -- functions.function_id
    relation      VARCHAR NOT NULL,  -- full / partial / prerequisite / none
    reason        VARCHAR,
    score         DOUBLE,            -- the cheap candidate score that proposed the pair
    llm_call_id   VARCHAR            -- llm_calls.call_id of the judging call
);

CREATE TABLE IF NOT EXISTS paths (
    path_id       VARCHAR NOT NULL,
    tool_set      VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    walk          VARCHAR[],         -- function ids of the initial random walk
    edge_ids      VARCHAR[],         -- graph_edges.edge_id walked
    turns         JSON NOT NULL,     -- list of turns after Merge/Insert/Split
    operations    VARCHAR[],         -- operations applied, in order
    llm_call_ids  VARCHAR[]          -- nested-call judge calls
);

CREATE TABLE IF NOT EXISTS turns (
    turn_id       VARCHAR NOT NULL,
    tool_set      VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    path_id       VARCHAR NOT NULL,
    turn_index    INTEGER NOT NULL,
    kind          VARCHAR NOT NULL,  -- call / miss_func / miss_params
    function_ids  VARCHAR[],
    query         VARCHAR NOT NULL,
    calls         JSON,              -- reference calls [{name, arguments}]
    outputs       JSON,              -- execution results, one per call
    tools         JSON,              -- function names offered at this turn
    attempts      INTEGER,
    llm_call_ids  VARCHAR[]          -- back- and forward-translation calls
);

CREATE TABLE IF NOT EXISTS path_rejections (
    tool_set      VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    path_id       VARCHAR NOT NULL,
    stage         VARCHAR NOT NULL,  -- queries / trajectories
    turn_index    INTEGER,
    rule          VARCHAR NOT NULL,
    reason        VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS trajectories (
    trajectory_id VARCHAR NOT NULL,
    tool_set      VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    path_id       VARCHAR NOT NULL,
    turn_ids      VARCHAR[],
    messages      JSON NOT NULL,     -- OpenAI chat messages, no hint text
    tools         JSON NOT NULL,     -- OpenAI tools offered
    llm_call_ids  VARCHAR[]          -- the teacher calls that wrote the assistant turns
);

CREATE TABLE IF NOT EXISTS preference_pairs (
    pair_id       VARCHAR NOT NULL,
    tool_set      VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    trajectory_id VARCHAR NOT NULL,
    turn_index    INTEGER NOT NULL,
    error_type    VARCHAR NOT NULL,
    prompt        JSON NOT NULL,     -- shared prefix (messages)
    chosen        JSON NOT NULL,     -- assistant messages of the positive turn
    rejected      JSON NOT NULL,     -- assistant messages written under a wrong hint
    llm_call_id   VARCHAR
);

CREATE TABLE IF NOT EXISTS splits (
    tool_set      VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    trajectory_id VARCHAR NOT NULL,
    path_id       VARCHAR NOT NULL,
    split         VARCHAR NOT NULL   -- train / validation / test
);

CREATE TABLE IF NOT EXISTS llm_calls (
    call_id       VARCHAR NOT NULL,
    tool_set      VARCHAR,
    run_id        VARCHAR,
    asset         VARCHAR,
    backend       VARCHAR NOT NULL,
    model         VARCHAR NOT NULL,
    cache_key     VARCHAR NOT NULL,
    prompt_hash   VARCHAR NOT NULL,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    latency_ms    DOUBLE,
    cache_hit     BOOLEAN NOT NULL,
    outcome       VARCHAR NOT NULL,  -- ok / error
    error         VARCHAR,
    created_at    TIMESTAMP
);

CREATE TABLE IF NOT EXISTS llm_cache (
    cache_key     VARCHAR PRIMARY KEY,
    backend       VARCHAR NOT NULL,
    model         VARCHAR NOT NULL,
    response      JSON NOT NULL,
    created_at    TIMESTAMP
);

CREATE TABLE IF NOT EXISTS eval_results (
    result_id     VARCHAR NOT NULL,
    tool_set      VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    student_model VARCHAR NOT NULL,
    trajectory_id VARCHAR NOT NULL,
    turn_index    INTEGER NOT NULL,
    kind          VARCHAR NOT NULL,
    expected      JSON,
    got           JSON,
    verdict       BOOLEAN NOT NULL,
    reason        VARCHAR,
    llm_call_id   VARCHAR,
    created_at    TIMESTAMP DEFAULT current_timestamp
);

-- One row per `student_training` run: the checkpoint it wrote, from what, how, and its losses.
CREATE TABLE IF NOT EXISTS training_runs (
    training_id   VARCHAR NOT NULL,   -- <checkpoint name>-<run id prefix>
    run_id        VARCHAR NOT NULL,
    checkpoint    VARCHAR NOT NULL,   -- the checkpoint directory written
    served_name   VARCHAR NOT NULL,   -- <name>@<weights fingerprint>, as eval_results.student_model
    base_model    VARCHAR NOT NULL,
    tool_sets     VARCHAR[],
    settings      JSON,
    losses        JSON,               -- per phase: [{step, loss, ...}]
    created_at    TIMESTAMP DEFAULT current_timestamp
);

-- Which exported rows went into which training run (SFT: a trajectory; DPO: a preference pair).
CREATE TABLE IF NOT EXISTS training_rows (
    training_id   VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL,
    tool_set      VARCHAR NOT NULL,
    phase         VARCHAR NOT NULL,   -- sft / dpo
    trajectory_id VARCHAR NOT NULL,
    pair_id       VARCHAR             -- dpo rows only
);

-- Columns added after the first release: applied to stores made before them.
ALTER TABLE eval_results ADD COLUMN IF NOT EXISTS mode VARCHAR;          -- teacher_forced / free_running
ALTER TABLE eval_results ADD COLUMN IF NOT EXISTS operations VARCHAR[];   -- the path's node operations
ALTER TABLE eval_results ADD COLUMN IF NOT EXISTS categories VARCHAR[];   -- categories of the expected calls
ALTER TABLE eval_results ADD COLUMN IF NOT EXISTS state_match BOOLEAN;    -- free-running, executable tools
ALTER TABLE functions ADD COLUMN IF NOT EXISTS origin JSON;            -- names in the source format (ToolBench)
ALTER TABLE paths ADD COLUMN IF NOT EXISTS shape VARCHAR DEFAULT 'multi_turn'; -- multi_turn / single / parallel / multiple / irrelevance
ALTER TABLE turns ADD COLUMN IF NOT EXISTS simulated BOOLEAN;             -- some output was written by the teacher, not run
ALTER TABLE graph_edges ADD COLUMN IF NOT EXISTS mapping JSON;          -- {target parameter: source output field}
ALTER TABLE graph_edges ADD COLUMN IF NOT EXISTS nested BOOLEAN;        -- data edge: the target is called on the source's output unasked
ALTER TABLE turns ADD COLUMN IF NOT EXISTS step_sizes INTEGER[];         -- calls per assistant step (dependent calls step by step)
ALTER TABLE turns ADD COLUMN IF NOT EXISTS missing VARCHAR[];            -- miss_params: the parameter the query leaves out
ALTER TABLE trajectories ADD COLUMN IF NOT EXISTS turn_meta JSON;        -- per user turn: kind, missing, functions, holdout
ALTER TABLE eval_results ADD COLUMN IF NOT EXISTS checkpoint VARCHAR;    -- the checkpoint served (vLLM), when one was
