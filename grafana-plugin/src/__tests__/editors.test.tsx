import React, { useState } from 'react';
import { fireEvent, render, screen, within } from '@testing-library/react';
import { DataSourceSettings } from '@grafana/data';
import { setDataSourceSrv } from '@grafana/runtime';

import { ConfigEditor, relayUrlProblem } from '../components/ConfigEditor';
import { QueryEditor } from '../components/QueryEditor';
import type { DataSource } from '../datasource';
import { fixedDataSourceSrv } from '../testing/dataSourceSrv';
import { WebbOptions, WebbQuery, WebbSecureOptions } from '../types';

/** The query editor as Grafana hosts it: the query lives in the panel, the editor changes it. */
function QueryHost(props: { initial: WebbQuery; changes: WebbQuery[]; onRun: () => void }) {
  const [query, setQuery] = useState(props.initial);
  return (
    <QueryEditor
      query={query}
      datasource={{} as DataSource}
      onChange={(q) => {
        props.changes.push(q);
        setQuery(q);
      }}
      onRunQuery={props.onRun}
    />
  );
}

function renderQuery(initial: Partial<WebbQuery> = {}) {
  const changes: WebbQuery[] = [];
  const runs = { n: 0 };
  render(<QueryHost initial={{ refId: 'A', ...initial }} changes={changes} onRun={() => runs.n++} />);
  return { changes, runs, last: () => changes[changes.length - 1] };
}

describe('query editor', () => {
  it('switching to Service map changes the query type and runs it', () => {
    const { last, runs } = renderQuery({ queryType: 'flows' });
    expect(screen.getByLabelText('Pod')).toBeInTheDocument();
    fireEvent.click(screen.getByLabelText('Service map'));
    expect(last().queryType).toBe('serviceMap');
    expect(runs.n).toBe(1);
    expect(screen.queryByLabelText('Pod')).not.toBeInTheDocument();
    expect(screen.getByLabelText('Namespace')).toBeInTheDocument();
  });

  it('a bad HTTP status shows a message naming the field and the query does not run', () => {
    const { last, runs } = renderQuery({ queryType: 'flows' });
    const status = screen.getByLabelText('HTTP status');
    fireEvent.change(status, { target: { value: '200, 6xx' } });
    fireEvent.blur(status);
    expect(last().httpStatus).toBe('200, 6xx');
    expect(runs.n).toBe(0);
    expect(
      screen.getAllByText('HTTP status "6xx" is not a code or class (expected e.g. 404, 4+ or 40+)').length
    ).toBeGreaterThan(0);

    fireEvent.change(status, { target: { value: '200, 5+' } });
    fireEvent.blur(status);
    expect(runs.n).toBe(1);
    expect(screen.queryByText(/is not a code or class/)).not.toBeInTheDocument();
  });

  it('broken FlowFilter JSON says so under its field', () => {
    renderQuery({ queryType: 'flows' });
    fireEvent.change(screen.getByLabelText('FlowFilter JSON'), { target: { value: '{"verdict": [' } });
    expect(screen.getAllByText(/^FlowFilter JSON: not valid JSON/).length).toBeGreaterThan(0);
  });

  it("verdicts are chosen from Hubble's list", () => {
    const { last } = renderQuery({ queryType: 'flows' });
    const select = screen.getByLabelText('Verdict');
    fireEvent.keyDown(select, { key: 'ArrowDown' });
    fireEvent.click(screen.getByText('DROPPED'));
    expect(last().verdict).toEqual(['DROPPED']);
  });

  it('the SQL editor asks for a query and keeps what is typed', () => {
    const { last } = renderQuery({ queryType: 'sql' });
    expect(screen.getAllByText(/^SQL: write a SELECT over table flows/).length).toBeGreaterThan(0);
    fireEvent.change(screen.getByRole('textbox', { name: 'SQL' }), { target: { value: 'SELECT count(*) FROM flows' } });
    expect(last().sql).toBe('SELECT count(*) FROM flows');
    expect(screen.queryByText(/^SQL: write a SELECT/)).not.toBeInTheDocument();
  });
});

function settings(jsonData: WebbOptions, secure: Partial<Record<keyof WebbSecureOptions, boolean>> = {}) {
  return {
    id: 1,
    uid: 'webb',
    orgId: 1,
    name: 'Webb',
    type: 'webb-flows-datasource',
    typeName: 'Webb flows',
    typeLogoUrl: '',
    access: 'proxy',
    url: '',
    user: '',
    basicAuth: false,
    basicAuthUser: '',
    isDefault: false,
    withCredentials: false,
    readOnly: false,
    jsonData,
    secureJsonFields: secure,
    secureJsonData: {},
  } as DataSourceSettings<WebbOptions, WebbSecureOptions>;
}

function ConfigHost(props: {
  initial: DataSourceSettings<WebbOptions, WebbSecureOptions>;
  changes: Array<DataSourceSettings<WebbOptions, WebbSecureOptions>>;
}) {
  const [options, setOptions] = useState(props.initial);
  return (
    <ConfigEditor
      options={options}
      onOptionsChange={(o) => {
        props.changes.push(o);
        setOptions(o);
      }}
    />
  );
}

describe('config editor', () => {
  beforeAll(() => setDataSourceSrv(fixedDataSourceSrv()));

  it('the relay URL goes to jsonData and a bad one is explained', () => {
    const changes: Array<DataSourceSettings<WebbOptions, WebbSecureOptions>> = [];
    render(<ConfigHost initial={settings({})} changes={changes} />);
    expect(screen.getByText(/^Relay URL is required/)).toBeInTheDocument();
    const url = screen.getByLabelText('Relay URL');
    fireEvent.change(url, { target: { value: 'webb-relay:9965' } });
    expect(screen.getByText('Relay URL "webb-relay:9965" must start with http:// or https://')).toBeInTheDocument();
    fireEvent.change(url, { target: { value: 'http://webb-relay:9965' } });
    expect(changes[changes.length - 1].jsonData.relayUrl).toBe('http://webb-relay:9965');
    expect(screen.queryByText(/Relay URL .* must/)).not.toBeInTheDocument();
  });

  it('the token goes to secureJsonData only', () => {
    const changes: Array<DataSourceSettings<WebbOptions, WebbSecureOptions>> = [];
    render(<ConfigHost initial={settings({ relayUrl: 'http://r:9965' })} changes={changes} />);
    fireEvent.change(screen.getByLabelText('API token'), { target: { value: 's3cret' } });
    const last = changes[changes.length - 1];
    expect(last.secureJsonData).toEqual({ apiToken: 's3cret' });
    expect(JSON.stringify(last.jsonData)).not.toContain('s3cret');
  });

  it('a stored token shows as configured and Reset clears it', () => {
    const changes: Array<DataSourceSettings<WebbOptions, WebbSecureOptions>> = [];
    render(<ConfigHost initial={settings({ relayUrl: 'http://r:9965' }, { apiToken: true })} changes={changes} />);
    expect(screen.getByDisplayValue('configured')).toBeInTheDocument();
    fireEvent.click(screen.getByRole('button', { name: 'Reset' }));
    const last = changes[changes.length - 1];
    expect(last.secureJsonFields.apiToken).toBe(false);
    expect(last.secureJsonData?.apiToken).toBe('');
  });

  it('the Tempo picker offers only Tempo data sources and stores the chosen uid', () => {
    const changes: Array<DataSourceSettings<WebbOptions, WebbSecureOptions>> = [];
    render(<ConfigHost initial={settings({ relayUrl: 'http://r:9965' })} changes={changes} />);
    const picker = screen.getByLabelText('Select a data source');
    fireEvent.keyDown(picker, { key: 'ArrowDown' });
    const menu = screen.getByLabelText('Select options menu');
    expect(within(menu).getByText('Tempo staging')).toBeInTheDocument();
    expect(within(menu).queryByText('Prometheus')).not.toBeInTheDocument();
    fireEvent.click(within(menu).getByText('Tempo'));
    const last = changes[changes.length - 1];
    expect(last.jsonData).toEqual({
      relayUrl: 'http://r:9965',
      tempoDatasourceUid: 'tempo-main',
      tempoDatasourceName: 'Tempo',
    });
  });

  it('relay URL rules', () => {
    expect(relayUrlProblem('https://relay.example:9965')).toBeUndefined();
    expect(relayUrlProblem('http://relay:9965/api/v1')).toBe(
      'Relay URL "http://relay:9965/api/v1" must be the relay itself, without a path (the plugin adds /api/v1/…)'
    );
    expect(relayUrlProblem('not a url')).toBe(
      'Relay URL "not a url" is not a URL (expected e.g. http://webb-relay:9965)'
    );
  });
});
