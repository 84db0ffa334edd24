-- Lineage views, applied after schema.sql. One query answers "where did this training
-- example come from":  SELECT * FROM training_example_lineage WHERE trajectory_id = ?;

CREATE OR REPLACE VIEW training_example_lineage AS
WITH traj AS (
    SELECT t.trajectory_id, t.tool_set, t.run_id AS trajectory_run_id, t.path_id,
           t.turn_ids, t.llm_call_ids AS trajectory_llm_call_ids
    FROM trajectories t
),
turn_rows AS (
    SELECT tr.trajectory_id,
           list(struct_pack(turn_id := u.turn_id, turn_index := u.turn_index, kind := u.kind,
                            query := u.query, function_ids := u.function_ids,
                            llm_call_ids := u.llm_call_ids) ORDER BY u.turn_index) AS turns
    FROM traj tr JOIN turns u
      ON u.tool_set = tr.tool_set AND list_contains(tr.turn_ids, u.turn_id)
    GROUP BY tr.trajectory_id
),
path_rows AS (
    SELECT tr.trajectory_id, p.run_id AS path_run_id, p.walk, p.edge_ids, p.operations,
           p.llm_call_ids AS path_llm_call_ids
    FROM traj tr JOIN paths p ON p.tool_set = tr.tool_set AND p.path_id = tr.path_id
),
edge_rows AS (
    SELECT pr.trajectory_id,
           list(struct_pack(edge_id := e.edge_id, source_id := e.source_id,
                            target_id := e.target_id, relation := e.relation,
                            llm_call_id := e.llm_call_id)) AS edges
    FROM path_rows pr JOIN traj tr ON tr.trajectory_id = pr.trajectory_id
    JOIN graph_edges e ON e.tool_set = tr.tool_set AND list_contains(pr.edge_ids, e.edge_id)
    GROUP BY pr.trajectory_id
),
function_rows AS (
    SELECT pr.trajectory_id, list(DISTINCT f.name) AS function_names
    FROM path_rows pr JOIN traj tr ON tr.trajectory_id = pr.trajectory_id
    JOIN functions f ON f.tool_set = tr.tool_set AND list_contains(pr.walk, f.function_id)
    GROUP BY pr.trajectory_id
)
SELECT tr.trajectory_id, tr.tool_set, s.split, tr.trajectory_run_id, tr.path_id,
       pr.path_run_id, pr.operations, fr.function_names, pr.walk, er.edges, ur.turns,
       tr.trajectory_llm_call_ids, pr.path_llm_call_ids
FROM traj tr
LEFT JOIN splits s ON s.tool_set = tr.tool_set AND s.trajectory_id = tr.trajectory_id
LEFT JOIN path_rows pr ON pr.trajectory_id = tr.trajectory_id
LEFT JOIN edge_rows er ON er.trajectory_id = tr.trajectory_id
LEFT JOIN function_rows fr ON fr.trajectory_id = tr.trajectory_id
LEFT JOIN turn_rows ur ON ur.trajectory_id = tr.trajectory_id;
