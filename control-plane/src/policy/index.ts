// Policy as code: the file format's model, its validation and the change
// lines between two configurations. Shared by the CLI and the control plane.
export * from './model.js';
export * from './validate.js';
export * from './state.js';
