import React, { ChangeEvent } from 'react';
import { QueryEditorProps, SelectableValue } from '@grafana/data';
import { Alert, InlineField, InlineFieldRow, Input, MultiSelect, RadioButtonGroup, Stack, TextArea } from '@grafana/ui';

import type { DataSource } from '../datasource';
import { QueryProblem, validateQuery } from '../filters';
import { DEFAULT_FLOWS_LIMIT, PROTOCOLS, QUERY_TYPES, QueryType, VERDICTS, WebbOptions, WebbQuery } from '../types';

type Props = QueryEditorProps<DataSource, WebbQuery, WebbOptions>;

const LABEL = 18;
const verdictOptions = VERDICTS.map((v) => ({ label: v, value: v }));
const protocolOptions = PROTOCOLS.map((p) => ({ label: p, value: p }));

export function QueryEditor({ query, onChange, onRunQuery }: Props) {
  const type: QueryType = query.queryType ?? 'flows';
  const problems = validateQuery(query);
  const problem = (field: QueryProblem['field']) => problems.find((p) => p.field === field)?.message;
  // Runs only a query that can run; otherwise the messages say what to fix.
  const change = (next: WebbQuery, run = false) => {
    onChange(next);
    if (run && validateQuery(next).length === 0) {
      onRunQuery();
    }
  };
  const text = (key: keyof WebbQuery) => (e: React.FormEvent<HTMLInputElement | HTMLTextAreaElement>) =>
    change({ ...query, [key]: e.currentTarget.value });
  const run = () => {
    if (validateQuery(query).length === 0) {
      onRunQuery();
    }
  };

  const field = (
    key: 'namespace' | 'pod' | 'workload' | 'httpStatus' | 'traceId',
    label: string,
    placeholder: string,
    tooltip: string
  ) => (
    <InlineField label={label} labelWidth={LABEL} tooltip={tooltip} invalid={!!problem(key)} error={problem(key)}>
      <Input
        id={`webb-${key}`}
        aria-label={label}
        value={query[key] ?? ''}
        placeholder={placeholder}
        width={32}
        onChange={text(key)}
        onBlur={run}
      />
    </InlineField>
  );

  return (
    <Stack direction="column" gap={1}>
      <InlineField label="Query type" labelWidth={LABEL}>
        <RadioButtonGroup<QueryType>
          options={QUERY_TYPES}
          value={type}
          onChange={(v) => change({ ...query, queryType: v }, true)}
        />
      </InlineField>

      {type === 'flows' && (
        <>
          <InlineFieldRow>
            {field('namespace', 'Namespace', 'any', 'Flows from or to this namespace ($namespace works)')}
            {field(
              'pod',
              'Pod',
              'any',
              'Pod name prefix, either end; without a namespace Hubble means namespace "default"'
            )}
          </InlineFieldRow>
          <InlineFieldRow>
            {field('workload', 'Workload', 'any', 'Workload name (Deployment, StatefulSet…), either end')}
            {field('traceId', 'Trace ID', '32 hex digits', 'Flows of one W3C trace')}
          </InlineFieldRow>
          <InlineFieldRow>
            <InlineField label="Verdict" labelWidth={LABEL} invalid={!!problem('verdict')} error={problem('verdict')}>
              <MultiSelect
                inputId="webb-verdict"
                aria-label="Verdict"
                options={verdictOptions}
                value={query.verdict ?? []}
                placeholder="any"
                width={32}
                onChange={(v: Array<SelectableValue<string>>) =>
                  change({ ...query, verdict: v.map((x) => x.value!) }, true)
                }
              />
            </InlineField>
            <InlineField
              label="Protocol"
              labelWidth={LABEL}
              invalid={!!problem('protocol')}
              error={problem('protocol')}
            >
              <MultiSelect
                inputId="webb-protocol"
                aria-label="Protocol"
                options={protocolOptions}
                value={query.protocol ?? []}
                placeholder="any"
                width={32}
                onChange={(v: Array<SelectableValue<string>>) =>
                  change({ ...query, protocol: v.map((x) => x.value!) }, true)
                }
              />
            </InlineField>
          </InlineFieldRow>
          <InlineFieldRow>
            {field('httpStatus', 'HTTP status', '200, 4+, 50+', 'Status codes or classes, comma-separated')}
            <InlineField
              label="Limit"
              labelWidth={LABEL}
              tooltip="The newest flows of the range, at most this many"
              invalid={!!problem('limit')}
              error={problem('limit')}
            >
              <Input
                id="webb-limit"
                aria-label="Limit"
                type="number"
                value={query.limit ?? ''}
                placeholder={String(DEFAULT_FLOWS_LIMIT)}
                width={32}
                onChange={(e: ChangeEvent<HTMLInputElement>) => {
                  const v = e.currentTarget.value;
                  change({ ...query, limit: v === '' ? undefined : Number(v) });
                }}
                onBlur={run}
              />
            </InlineField>
          </InlineFieldRow>
          <InlineField
            label="FlowFilter JSON"
            labelWidth={LABEL}
            grow
            tooltip="More Hubble FlowFilter fields in protojson, ANDed with the fields above; an array means any of them"
            invalid={!!problem('filterJson')}
            error={problem('filterJson')}
          >
            <TextArea
              id="webb-filterJson"
              aria-label="FlowFilter JSON"
              rows={2}
              value={query.filterJson ?? ''}
              placeholder='{"destination_port": ["53"], "source_label": ["k8s:app=web"]}'
              onChange={text('filterJson')}
              onBlur={run}
            />
          </InlineField>
        </>
      )}

      {type === 'serviceMap' && (
        <InlineFieldRow>
          {field('namespace', 'Namespace', 'all', 'Only edges with an end in this namespace ($namespace works)')}
        </InlineFieldRow>
      )}

      {type === 'sql' && (
        <InlineField
          label="SQL"
          labelWidth={LABEL}
          grow
          tooltip="Read-only SQL over table flows; $__timeFilter(time), $__timeFrom and $__timeTo give the dashboard's range"
          invalid={!!problem('sql')}
          error={problem('sql')}
        >
          <TextArea
            id="webb-sql"
            aria-label="SQL"
            rows={4}
            value={query.sql ?? ''}
            placeholder="SELECT verdict, count(*) AS flows FROM flows WHERE $__timeFilter(time) GROUP BY verdict"
            onChange={text('sql')}
            onBlur={run}
          />
        </InlineField>
      )}

      {problems.length > 0 && (
        <Alert severity="warning" title="This query will not run until fixed">
          <ul>
            {problems.map((p) => (
              <li key={p.field + p.message}>{p.message}</li>
            ))}
          </ul>
        </Alert>
      )}
    </Stack>
  );
}
