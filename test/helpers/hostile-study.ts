/** A two-member study (repeats: 2) of a tiny model: what the hardening tests plan with names and paths that try to bend scheduler files. */
export const HOSTILE_STUDY_SPEC = `
name: hostile
data: { trainLimit: 100, testLimit: 100, validation: { size: 50 } }
model:
  layers:
    - flatten: {}
    - dense: { units: 10, activation: softmax }
repeats: 2
`;
