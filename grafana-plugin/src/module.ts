import { DataSourcePlugin } from '@grafana/data';

import { ConfigEditor } from './components/ConfigEditor';
import { QueryEditor } from './components/QueryEditor';
import { DataSource } from './datasource';
import { WebbOptions, WebbQuery, WebbSecureOptions } from './types';

export const plugin = new DataSourcePlugin<DataSource, WebbQuery, WebbOptions, WebbSecureOptions>(DataSource)
  .setConfigEditor(ConfigEditor)
  .setQueryEditor(QueryEditor);
