// The handler table: node type → handler. Node types without an entry are
// walked through (statements among them are refused as unrecognised).
//
// Decisions where the spec was open (each also noted at its handler):
// - SELECT INTO / CREATE TABLE AS are 'ddl': they create a table, like CREATE TABLE.
// - TRUNCATE is 'write' (with a reason); LOCK is 'write'; row locks
//   (SELECT … FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE) are 'write'.
// - CALL is 'admin': a procedure can run any statement, including COMMIT, and
//   its body is invisible here. DO is 'admin'.
// - EXECUTE (SQL level) is 'write': the prepared body is not visible here.
//   Callers that track PREPARE per session can use `preparedName` to do better.
//   PREPARE takes the level of its statement, so a write is refused up front.
// - EXPLAIN without ANALYZE is 'read' whatever it explains (the statement is
//   only planned) — except EXPLAIN EXECUTE, whose parameter expressions are
//   evaluated; EXPLAIN ANALYZE takes the level of its statement.
// - RESET ALL is 'write': it resets default_transaction_read_only (checked on
//   PG 15). DISCARD ALL is 'admin' + escalation: it runs SET SESSION
//   AUTHORIZATION DEFAULT, which undoes SET ROLE. Other DISCARDs are 'read'.
// - SET of a setting not on the harmless list is 'admin' (fail closed), and so
//   is SET client_encoding to anything but UTF8 and standard_conforming_strings
//   = off: both would make the server read different SQL than was classified.
// - Changing ownership (ALTER … OWNER TO, ALTER TABLE … OWNER TO, REASSIGN
//   OWNED) is 'admin': ownership carries every privilege on the object.
// - CREATE EXTENSION is 'ddl' (as in the spec). CREATE FUNCTION in an
//   untrusted language (C, internal, pl*u) is 'admin'. Foreign servers, user
//   mappings, FDWs, tablespaces, event triggers, languages, access methods,
//   publications and subscriptions are 'admin' (server-wide or credentials).
// - Writes to pg_settings are 'admin' (an UPDATE there is set_config); DML or
//   COPY FROM on a system catalog (pg_catalog.* or an unqualified pg_* name)
//   is 'admin'.
// - Functions that run SQL given as text (query_to_xml, ts_stat, crosstab…)
//   take the level of that text when it is a constant (its objects, writes
//   and path changes become the statement's), else 'admin' and unscoped.
// - Writes (ObjectRef.writes) and search_path changes are what the statement
//   does when it runs: none under plain EXPLAIN, none inside code a
//   definition stores (function bodies, views, rules, triggers, policies,
//   domains); PREPARE carries its statement's, for the EXECUTE that runs it.
// - DO is unscoped and may set search_path to anything: its body is text.
import { funcCallHandler } from './handlers-functions.js';
import { aExprHandler, caseExprHandler, joinExprHandler, sortByHandler, subLinkHandler } from './handlers-operators.js';
import {
  addObjects,
  ADMIN_OBJECT_TYPES,
  createFunctionHandler,
  dbObject,
  fixed,
  objectLabel,
  otherObject,
  SERVER_ADMIN,
} from './handlers-ddl.js';
import {
  copyHandler,
  dmlHandler,
  explainHandler,
  rangeVarHandler,
  roleSpecHandler,
  selectHandler,
  truncateHandler,
} from './handlers-query.js';
import { discardHandler, transactionHandler, variableSetHandler } from './handlers-session.js';
import { isObj, list, str } from './tree.js';
import { visitChildren, type Handler } from './walk.js';

export const HANDLERS: Record<string, Handler> = {
  // --- queries and DML
  SelectStmt: selectHandler,
  InsertStmt: dmlHandler('INSERT', 'InsertStmt'),
  UpdateStmt: dmlHandler('UPDATE', 'UpdateStmt'),
  DeleteStmt: dmlHandler('DELETE', 'DeleteStmt'),
  MergeStmt: dmlHandler('MERGE', 'MergeStmt'),
  ReturnStmt: () => ({ kind: 'RETURN' }), // inside SQL-standard function bodies
  RangeVar: rangeVarHandler,
  RoleSpec: roleSpecHandler,
  FuncCall: funcCallHandler,
  // Operators run functions that may be the user's: their names are recorded.
  A_Expr: aExprHandler,
  SubLink: subLinkHandler,
  SortBy: sortByHandler,
  CaseExpr: caseExprHandler,
  JoinExpr: joinExprHandler,

  // --- transactions, session, cursors, prepared statements
  TransactionStmt: transactionHandler,
  VariableSetStmt: variableSetHandler,
  VariableShowStmt: (n) => ({ kind: 'SHOW', setting: (str(n.name) ?? '').toLowerCase(), skip: true }),
  ConstraintsSetStmt: () => ({ kind: 'SET CONSTRAINTS' }),
  DiscardStmt: discardHandler,
  ListenStmt: () => ({ kind: 'LISTEN', skip: true }),
  UnlistenStmt: () => ({ kind: 'UNLISTEN', skip: true }),
  NotifyStmt: fixed('write', 'NOTIFY', 'NOTIFY sends a notification to other sessions'),
  DeclareCursorStmt: () => ({ kind: 'DECLARE CURSOR' }), // level of its query, walked
  FetchStmt: (n) => ({ kind: n.ismove === true ? 'MOVE' : 'FETCH', skip: true }),
  ClosePortalStmt: () => ({ kind: 'CLOSE', skip: true }),
  // PREPARE takes the level of its statement (walked as a child), so a write
  // is refused when prepared rather than when executed.
  PrepareStmt: (n) => ({ kind: 'PREPARE', preparedName: str(n.name) }),
  ExecuteStmt: (n, w) => {
    w.raise('write', 'EXECUTE runs a prepared statement whose text is not visible here (unless the caller tracks PREPARE)');
    return { kind: 'EXECUTE', preparedName: str(n.name) };
  },
  DeallocateStmt: (n) => ({ kind: 'DEALLOCATE', preparedName: str(n.name), skip: true }),
  ExplainStmt: explainHandler,

  // --- data movement and locks
  CopyStmt: copyHandler,
  TruncateStmt: truncateHandler,
  LockStmt: fixed('write', 'LOCK TABLE', 'LOCK takes table locks that block other sessions'),
  RefreshMatViewStmt: fixed('write', 'REFRESH MATERIALIZED VIEW', 'REFRESH MATERIALIZED VIEW rewrites the view’s stored rows'),

  // --- code execution
  DoStmt: (_n, w) => {
    w.raise('admin', 'DO runs an anonymous code block, which can do anything the role can');
    // Its code is text in a procedural language: it may read any schema and
    // set search_path to anything.
    w.unscope('DO runs code whose reach cannot be checked against the rule\'s scopes');
    w.changePath({ op: 'set', value: undefined, local: false });
    return { kind: 'DO' };
  },
  CallStmt: fixed('admin', 'CALL', 'CALL runs a procedure, which can run any statement (including COMMIT)'),

  // --- schema (ddl)
  CreateStmt: fixed('ddl', 'CREATE TABLE'),
  CreateForeignTableStmt: fixed('ddl', 'CREATE FOREIGN TABLE'),
  CreateTableAsStmt: fixed('ddl', (n) => (n.objtype === 'OBJECT_MATVIEW' ? 'CREATE MATERIALIZED VIEW' : 'CREATE TABLE AS')),
  ViewStmt: fixed('ddl', 'CREATE VIEW'),
  IndexStmt: fixed('ddl', 'CREATE INDEX'),
  CreateSeqStmt: fixed('ddl', 'CREATE SEQUENCE'),
  AlterSeqStmt: fixed('ddl', 'ALTER SEQUENCE'),
  CreateSchemaStmt: fixed('ddl', 'CREATE SCHEMA', undefined, (n, w) => {
    const s = str(n.schemaname);
    if (s) w.addObject({ type: 'schema', name: s });
  }),
  AlterTableStmt: fixed('ddl', (n) => `ALTER ${objectLabel(str(n.objtype))}`),
  AlterTableCmd: (n, w) => {
    if (n.subtype === 'AT_ChangeOwner') w.raise('admin', 'changes the owner, who holds every privilege on it');
  },
  ReplicaIdentityStmt: fixed('ddl', 'ALTER TABLE'),
  AlterDomainStmt: fixed('ddl', 'ALTER DOMAIN'),
  AlterCollationStmt: fixed('ddl', 'ALTER COLLATION'),
  CreateDomainStmt: fixed('ddl', 'CREATE DOMAIN'),
  CreateEnumStmt: fixed('ddl', 'CREATE TYPE'),
  CreateRangeStmt: fixed('ddl', 'CREATE TYPE'),
  CompositeTypeStmt: fixed('ddl', 'CREATE TYPE'),
  AlterEnumStmt: fixed('ddl', 'ALTER TYPE'),
  AlterTypeStmt: fixed('ddl', 'ALTER TYPE'),
  DefineStmt: fixed('ddl', (n) => `CREATE ${objectLabel(str(n.kind))}`),
  CreateFunctionStmt: createFunctionHandler,
  AlterFunctionStmt: fixed('ddl', (n) => `ALTER ${objectLabel(str(n.objtype) ?? 'OBJECT_FUNCTION')}`, undefined, (n, w) =>
    addObjects(w, str(n.objtype) ?? 'OBJECT_FUNCTION', [n.func !== undefined ? { ObjectWithArgs: n.func } : undefined]),
  ),
  CreateTrigStmt: fixed('ddl', (n) => (n.isconstraint === true ? 'CREATE CONSTRAINT TRIGGER' : 'CREATE TRIGGER')),
  RuleStmt: fixed('ddl', 'CREATE RULE'),
  CreatePolicyStmt: fixed('ddl', 'CREATE POLICY'),
  AlterPolicyStmt: fixed('ddl', 'ALTER POLICY'),
  CreateOpClassStmt: fixed('ddl', 'CREATE OPERATOR CLASS'),
  CreateOpFamilyStmt: fixed('ddl', 'CREATE OPERATOR FAMILY'),
  AlterOpFamilyStmt: fixed('ddl', 'ALTER OPERATOR FAMILY'),
  AlterOperatorStmt: fixed('ddl', 'ALTER OPERATOR'),
  CreateStatsStmt: fixed('ddl', 'CREATE STATISTICS'),
  AlterStatsStmt: fixed('ddl', 'ALTER STATISTICS'),
  CreateConversionStmt: fixed('ddl', 'CREATE CONVERSION'),
  CreateCastStmt: fixed('ddl', 'CREATE CAST'),
  CreateTransformStmt: fixed('ddl', 'CREATE TRANSFORM'),
  AlterTSDictionaryStmt: fixed('ddl', 'ALTER TEXT SEARCH DICTIONARY'),
  AlterTSConfigurationStmt: fixed('ddl', 'ALTER TEXT SEARCH CONFIGURATION'),
  CreateExtensionStmt: fixed('ddl', 'CREATE EXTENSION', 'installs an extension (its script runs now)', otherObject('extname')),
  AlterExtensionStmt: fixed('ddl', 'ALTER EXTENSION', undefined, otherObject('extname')),
  AlterExtensionContentsStmt: fixed('ddl', 'ALTER EXTENSION', undefined, otherObject('extname')),
  ImportForeignSchemaStmt: fixed('ddl', 'IMPORT FOREIGN SCHEMA'),
  AlterObjectDependsStmt: fixed('ddl', (n) => `ALTER ${objectLabel(str(n.objectType))}`, undefined, (n, w) =>
    addObjects(w, str(n.objectType), [n.object]),
  ),
  AlterObjectSchemaStmt: fixed('ddl', (n) => `ALTER ${objectLabel(str(n.objectType))}`, undefined, (n, w) => {
    addObjects(w, str(n.objectType), [n.object]);
    const s = str(n.newschema);
    if (s) w.addObject({ type: 'schema', name: s });
  }),
  CommentStmt: fixed('ddl', 'COMMENT ON', undefined, (n, w) => addObjects(w, str(n.objtype), [n.object])),
  DropStmt: (n, w) => {
    const t = str(n.removeType);
    w.raise(t && ADMIN_OBJECT_TYPES.has(t) ? 'admin' : 'ddl');
    addObjects(w, t, n.objects);
    return { kind: `DROP ${objectLabel(t)}`, skip: true };
  },
  RenameStmt: (n, w) => {
    const t = str(n.renameType);
    const shown = t === 'OBJECT_COLUMN' || t === 'OBJECT_ATTRIBUTE' || t === 'OBJECT_TABCONSTRAINT' ? str(n.relationType) : t;
    w.raise(t && ADMIN_OBJECT_TYPES.has(t) ? 'admin' : 'ddl');
    addObjects(w, t, [n.object]);
    const sub = str(n.subname);
    if (sub && (t === 'OBJECT_ROLE' || t === 'OBJECT_DATABASE' || t === 'OBJECT_SCHEMA')) {
      addObjects(w, t, [{ String: { sval: sub } }]);
    }
    return { kind: `ALTER ${objectLabel(shown)}` };
  },

  // --- privileges, roles, ownership (admin)
  GrantStmt: (n, w) => {
    w.raise('admin');
    const t = str(n.objtype);
    addObjects(w, n.targtype === 'ACL_TARGET_ALL_IN_SCHEMA' ? 'OBJECT_SCHEMA' : t, n.objects);
    visitChildren('GrantStmt', n, w, ['objects']);
    return { kind: n.is_grant === true ? 'GRANT' : 'REVOKE', skip: true };
  },
  GrantRoleStmt: (n, w) => {
    w.raise('admin');
    for (const p of list(n.granted_roles)) {
      const name = isObj(p) && isObj(p.AccessPriv) ? str(p.AccessPriv.priv_name) : undefined;
      if (name) w.addObject({ type: 'role', name });
    }
    return { kind: n.is_grant === true ? 'GRANT ROLE' : 'REVOKE ROLE' };
  },
  AlterDefaultPrivilegesStmt: fixed('admin', 'ALTER DEFAULT PRIVILEGES'),
  CreateRoleStmt: fixed(
    'admin',
    (n) => `CREATE ${n.stmt_type === 'ROLESTMT_USER' ? 'USER' : n.stmt_type === 'ROLESTMT_GROUP' ? 'GROUP' : 'ROLE'}`,
    undefined,
    (n, w) => {
      const r = str(n.role);
      if (r) w.addObject({ type: 'role', name: r });
    },
  ),
  AlterRoleStmt: fixed('admin', 'ALTER ROLE'),
  AlterRoleSetStmt: fixed('admin', 'ALTER ROLE'),
  DropRoleStmt: fixed('admin', 'DROP ROLE'),
  AlterOwnerStmt: fixed('admin', (n) => `ALTER ${objectLabel(str(n.objectType))}`, 'changes the owner, who holds every privilege on it', (n, w) =>
    addObjects(w, str(n.objectType), [n.object]),
  ),
  DropOwnedStmt: fixed('admin', 'DROP OWNED'),
  ReassignOwnedStmt: fixed('admin', 'REASSIGN OWNED'),
  SecLabelStmt: fixed('admin', 'SECURITY LABEL', undefined, (n, w) => addObjects(w, str(n.objtype), [n.object])),

  // --- server administration (admin)
  AlterSystemStmt: fixed('admin', 'ALTER SYSTEM'),
  CreatedbStmt: fixed('admin', 'CREATE DATABASE', undefined, dbObject),
  AlterDatabaseStmt: fixed('admin', 'ALTER DATABASE', undefined, dbObject),
  AlterDatabaseSetStmt: fixed('admin', 'ALTER DATABASE', undefined, dbObject),
  AlterDatabaseRefreshCollStmt: fixed('admin', 'ALTER DATABASE', undefined, dbObject),
  DropdbStmt: fixed('admin', 'DROP DATABASE', undefined, dbObject),
  VacuumStmt: fixed('admin', (n) => (n.is_vacuumcmd === true ? 'VACUUM' : 'ANALYZE'), SERVER_ADMIN),
  ClusterStmt: fixed('admin', 'CLUSTER', SERVER_ADMIN),
  ReindexStmt: fixed('admin', 'REINDEX', SERVER_ADMIN),
  CheckPointStmt: fixed('admin', 'CHECKPOINT', SERVER_ADMIN),
  LoadStmt: fixed('admin', 'LOAD', 'LOAD loads a shared library into the server process'),
  CreateTableSpaceStmt: fixed('admin', 'CREATE TABLESPACE', undefined, otherObject('tablespacename')),
  DropTableSpaceStmt: fixed('admin', 'DROP TABLESPACE', undefined, otherObject('tablespacename')),
  AlterTableSpaceOptionsStmt: fixed('admin', 'ALTER TABLESPACE', undefined, otherObject('tablespacename')),
  AlterTableMoveAllStmt: fixed('admin', 'ALTER TABLE ALL IN TABLESPACE'),
  CreateFdwStmt: fixed('admin', 'CREATE FOREIGN DATA WRAPPER'),
  AlterFdwStmt: fixed('admin', 'ALTER FOREIGN DATA WRAPPER'),
  CreateForeignServerStmt: fixed('admin', 'CREATE SERVER', 'a foreign server lets the database connect to other servers', otherObject('servername')),
  AlterForeignServerStmt: fixed('admin', 'ALTER SERVER', undefined, otherObject('servername')),
  CreateUserMappingStmt: fixed('admin', 'CREATE USER MAPPING', 'user mappings hold credentials for foreign servers'),
  AlterUserMappingStmt: fixed('admin', 'ALTER USER MAPPING', 'user mappings hold credentials for foreign servers'),
  DropUserMappingStmt: fixed('admin', 'DROP USER MAPPING'),
  CreateAmStmt: fixed('admin', 'CREATE ACCESS METHOD'),
  CreateEventTrigStmt: fixed('admin', 'CREATE EVENT TRIGGER', 'event triggers run on every DDL statement, database-wide'),
  AlterEventTrigStmt: fixed('admin', 'ALTER EVENT TRIGGER'),
  CreatePLangStmt: fixed('admin', 'CREATE LANGUAGE'),
  CreatePublicationStmt: fixed('admin', 'CREATE PUBLICATION', 'publications stream table changes out of the server', otherObject('pubname')),
  AlterPublicationStmt: fixed('admin', 'ALTER PUBLICATION', undefined, otherObject('pubname')),
  CreateSubscriptionStmt: fixed('admin', 'CREATE SUBSCRIPTION', 'subscriptions connect to other servers', otherObject('subname')),
  AlterSubscriptionStmt: fixed('admin', 'ALTER SUBSCRIPTION', undefined, otherObject('subname')),
  DropSubscriptionStmt: fixed('admin', 'DROP SUBSCRIPTION', undefined, otherObject('subname')),
};

