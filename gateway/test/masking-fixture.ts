// A resource catalog for the masking tests: customers with e-mails and card
// numbers, views over them (one column plain, one computed), a materialized
// view, a partitioned table, a table whose columns are not known, and a
// table name in two schemas.
import type { ResourceCatalog } from '../src/catalog/types.js';

const col = (name: string, attnum: number, textLike = true) => ({ name, attnum, type: textLike ? 25 : 23, textLike });
const rel = (schema: string, name: string, kind = 'r') => [`${schema}.${name}`, { schema, name, kind }] as const;

export function catalog(): ResourceCatalog {
  return {
    fetchedAt: 0,
    sessionUser: 'app',
    searchPath: '"$user", public',
    schemas: ['public', 'billing'],
    relations: Object.fromEntries([
      rel('public', 'customers'),
      rel('public', 'orders'),
      rel('public', 'customer_cards', 'v'),
      rel('public', 'cards_again', 'v'),
      rel('public', 'order_notes', 'v'),
      rel('public', 'card_summary', 'm'),
      rel('public', 'payments', 'p'),
      rel('public', 'payments_2024'),
      rel('public', 'legacy'),
      rel('public', 'accounts'),
      rel('billing', 'accounts'),
    ]),
    catalogRelations: ['pg_class'],
    viewReads: {
      'public.customer_cards': ['public.customers'],
      'public.cards_again': ['public.customer_cards'],
      'public.order_notes': ['public.orders'],
      'public.card_summary': ['public.customers'],
    },
    viewCalls: {},
    children: { 'public.payments': ['public.payments_2024'] },
    parents: { 'public.payments_2024': ['public.payments'] },
    foreignKeys: [],
    triggers: [],
    rules: [],
    functions: {},
    operators: {},
    tableCalls: {},
    tableReadCalls: {},
    relationOids: {},
    columns: {
      'public.customers': [col('id', 1, false), col('name', 2), col('email', 3), col('card_number', 4)],
      'public.orders': [col('id', 1, false), col('customer_id', 2, false), col('note', 3)],
      'public.customer_cards': [col('id', 1, false), col('card_number', 2), col('email_upper', 3)],
      'public.cards_again': [col('card', 1), col('email_upper', 2)],
      'public.order_notes': [col('id', 1, false), col('note', 2)],
      'public.card_summary': [col('last4', 1), col('n', 2, false)],
      'public.payments': [col('id', 1, false), col('pan', 2)],
      'public.payments_2024': [col('id', 1, false), col('pan', 2)],
      'public.accounts': [col('id', 1, false), col('iban', 2)],
      'billing.accounts': [col('id', 1, false), col('iban', 2), col('owner', 3)],
      // public.legacy: columns not known.
    },
    viewDefinitions: {
      // pg_get_viewdef text: names qualified, with the view's own filter on a masked column.
      'public.customer_cards':
        ' SELECT c.id, c.card_number, upper(c.email) AS email_upper FROM public.customers c WHERE (c.card_number IS NOT NULL) ORDER BY c.email;',
      'public.cards_again': ' SELECT v.card_number AS card, v.email_upper FROM public.customer_cards v;',
      'public.order_notes': ' SELECT orders.id, orders.note FROM public.orders;',
      'public.card_summary': ' SELECT "right"(customers.card_number, 4) AS last4, count(*) AS n FROM public.customers GROUP BY customers.card_number;',
    },
  };
}

