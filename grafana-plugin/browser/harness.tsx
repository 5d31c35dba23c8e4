/**
 * A page with the plugin's built query editor and config editor, as Grafana would host them,
 * for the browser check (Grafana's server cannot run here). The current query and settings are
 * printed as JSON under each editor so the test can read what the editors produce.
 */
import React, { useState } from 'react';
import { createRoot } from 'react-dom/client';
import { DataSourceSettings } from '@grafana/data';
import { setDataSourceSrv } from '@grafana/runtime';
import { GlobalStyles, ThemeContext } from '@grafana/ui';
import { createTheme } from '@grafana/data';

import { ConfigEditor } from '../src/components/ConfigEditor';
import { QueryEditor } from '../src/components/QueryEditor';
import type { DataSource } from '../src/datasource';
import { fixedDataSourceSrv } from '../src/testing/dataSourceSrv';
import { WebbOptions, WebbQuery, WebbSecureOptions } from '../src/types';

setDataSourceSrv(fixedDataSourceSrv());
const theme = createTheme({ colors: { mode: 'dark' } });

function Harness() {
  const [query, setQuery] = useState<WebbQuery>({ refId: 'A', queryType: 'flows' });
  const [runs, setRuns] = useState(0);
  const [options, setOptions] = useState({
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
    jsonData: {},
    secureJsonFields: {},
    secureJsonData: {},
  } as unknown as DataSourceSettings<WebbOptions, WebbSecureOptions>);
  return (
    <ThemeContext.Provider value={theme}>
      {/* Grafana's page-wide CSS (box sizing, fonts, colours), as Grafana's app renders it. */}
      <GlobalStyles />
      <div
        style={{
          background: theme.colors.background.primary,
          color: theme.colors.text.primary,
          padding: 16,
          minHeight: '100vh',
        }}
      >
        <h3>Query editor</h3>
        <section id="query-editor">
          <QueryEditor
            query={query}
            datasource={{} as DataSource}
            onChange={setQuery}
            onRunQuery={() => setRuns((n) => n + 1)}
          />
        </section>
        <pre id="query-state" style={{ whiteSpace: 'pre-wrap' }}>
          {JSON.stringify({ query, runs })}
        </pre>
        <h3>Config editor</h3>
        <section id="config-editor">
          <ConfigEditor options={options} onOptionsChange={setOptions} />
        </section>
        <pre id="config-state" style={{ whiteSpace: 'pre-wrap' }}>
          {JSON.stringify({ jsonData: options.jsonData, secureJsonData: options.secureJsonData })}
        </pre>
      </div>
    </ThemeContext.Provider>
  );
}

createRoot(document.getElementById('root')!).render(<Harness />);
